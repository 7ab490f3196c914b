"""Crops in a folder that several machines mount (SIGHTLINE_BLOBS): two stores on one folder stand for two
machines. Writes are atomic (a reader sees a whole blob or none), two writers of one key leave one whole blob,
and nothing of a write is left behind but the blob."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from indexer.blobs import FileBlobStore, SharedFolderBlobStore
from services.settings import Settings
from services.system import _blobs


@pytest.fixture
def two_machines(tmp_path: Path) -> tuple[SharedFolderBlobStore, SharedFolderBlobStore]:
    folder = tmp_path / "shared"
    return SharedFolderBlobStore(folder), SharedFolderBlobStore(folder)


def test_what_one_machine_writes_the_other_reads_and_deletes(two_machines) -> None:  # noqa: ANN001
    a, b = two_machines
    a.put("2026/11/02/v1.jpg", b"crop one")
    assert b.get("2026/11/02/v1.jpg") == b"crop one"
    assert list(b.keys()) == ["2026/11/02/v1.jpg"]  # no temporary file left beside it
    assert b.delete("2026/11/02/v1.jpg") and a.get("2026/11/02/v1.jpg") is None
    assert not a.delete("2026/11/02/v1.jpg")
    with pytest.raises(KeyError):
        a.put("../outside.jpg", b"x")


def test_two_writers_of_one_key_leave_one_whole_blob(two_machines) -> None:  # noqa: ANN001
    a, b = two_machines
    contents = {a: b"A" * 300_000, b: b"B" * 200_000}  # different sizes: a torn write would show
    seen: list[bytes | None] = []
    stop = threading.Event()

    def write(store: SharedFolderBlobStore) -> None:
        for _ in range(40):
            store.put("same/key.jpg", contents[store])

    def read() -> None:
        while not stop.is_set():
            seen.append(a.get("same/key.jpg"))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(s,)) for s in (a, b)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert a.get("same/key.jpg") in contents.values()
    assert all(blob is None or blob in contents.values() for blob in seen)  # never half of one
    assert list(a.keys()) == ["same/key.jpg"]  # every temporary file was renamed away


def test_shared_writes_are_synced_and_readable_by_the_group(two_machines, monkeypatch) -> None:  # noqa: ANN001
    a, _ = two_machines
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    a.put("k.jpg", b"x")
    assert len(synced) == 2  # the file before its rename, then the folder after it
    assert (a.directory / "k.jpg").stat().st_mode & 0o777 == 0o640
    synced.clear()
    FileBlobStore(a.directory).put("local.jpg", b"y")  # the local default does not pay for syncs
    assert synced == []


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    store = SharedFolderBlobStore(tmp_path)
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError):
        store.put("k.jpg", b"x")
    assert list(store.keys()) == []


def test_the_setting_chooses_the_shared_folder(tmp_path: Path) -> None:
    shared = _blobs(Settings(data_dir=tmp_path, blobs_dir=tmp_path / "mnt", roads_geojson=None))
    assert isinstance(shared, SharedFolderBlobStore) and shared.directory == tmp_path / "mnt"
    local = _blobs(Settings(data_dir=tmp_path, roads_geojson=None))
    assert type(local) is FileBlobStore and local.directory == tmp_path / "crops"
