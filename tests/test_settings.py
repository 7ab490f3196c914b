"""Settings are read from the environment once, and a bad value is refused with its name, never guessed."""
from __future__ import annotations

from pathlib import Path

import pytest

from models.records import InputError
from services.cli.main import main
from services.settings import Settings


def test_the_environment_is_read_into_one_settings_object(tmp_path: Path) -> None:
    env = {"SIGHTLINE_DATA": str(tmp_path / "d"), "SIGHTLINE_MAX_UPLOAD_MB": "2", "SIGHTLINE_RETENTION_DAYS": "30",
           "SIGHTLINE_NPROBE": "64", "SIGHTLINE_EXACT_LIMIT": "1000", "SIGHTLINE_GRAPH_LIMIT": "5000",
           "SIGHTLINE_PARALLEL_BATCHES": "3", "SIGHTLINE_TILE_URL": "", "SIGHTLINE_FACES_WITHOUT_PEOPLE": "1"}
    settings = Settings.from_env(env)
    assert settings.data_dir == (tmp_path / "d").resolve() and settings.max_upload_bytes == 2 << 20
    assert (settings.retention_days, settings.nprobe, settings.exact_limit, settings.graph_limit, settings.tile_url,
            settings.parallel_batches, settings.faces_without_people) == (30.0, 64, 1000, 5000, None, 3, True)
    assert Settings.from_env({}) == Settings()  # nothing set: the defaults
    with pytest.raises(AttributeError):
        settings.data_dir = tmp_path  # type: ignore[misc]  # frozen: read once, changed by no one


@pytest.mark.parametrize("name, value", [("SIGHTLINE_MAX_UPLOAD_MB", "lots"), ("SIGHTLINE_MAX_UPLOAD_MB", "0"),
                                         ("SIGHTLINE_RETENTION_DAYS", "nan"), ("SIGHTLINE_RETENTION_DAYS", "-1"),
                                         ("SIGHTLINE_NPROBE", "inf"), ("SIGHTLINE_EXACT_LIMIT", "1e12"),
                                         ("SIGHTLINE_GRAPH_LIMIT", "-5"), ("SIGHTLINE_PARALLEL_BATCHES", "0"),
                                         ("SIGHTLINE_SECURE_COOKIES", "enabled"),
                                         ("SIGHTLINE_FACES_WITHOUT_PEOPLE", "2")])
def test_a_bad_value_is_an_error_that_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(InputError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("value, on", [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False),
                                       ("false", False), ("No", False), ("off", False)])
def test_on_off_variables_take_the_usual_spellings(value: str, on: bool) -> None:
    settings = Settings.from_env({"SIGHTLINE_SECURE_COOKIES": value, "SIGHTLINE_FACES_WITHOUT_PEOPLE": value})
    assert (settings.secure_cookies, settings.faces_without_people) == (on, on)


def test_the_cli_says_which_setting_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIGHTLINE_MAX_UPLOAD_MB", "-5")
    assert main(["--data", str(tmp_path), "cameras", "list"]) == 2
    assert "SIGHTLINE_MAX_UPLOAD_MB" in capsys.readouterr().err


def test_unknown_backends_and_a_data_folder_that_is_a_file_are_refused(tmp_path: Path) -> None:
    from services.system import Sightline

    with pytest.raises(InputError, match="unknown record store backend"):
        Sightline(Settings(data_dir=tmp_path / "d", store_backend="oracle"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        Sightline(Settings(data_dir=tmp_path / "file"))
