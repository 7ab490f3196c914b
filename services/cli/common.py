"""What every `sightline` command shares: the settings, the opened system, JSON output, time ranges."""
from __future__ import annotations

import argparse
import json
from datetime import datetime

from geo import trajectories
from models.records import InputError, to_plain
from services.settings import Settings
from services.system import Sightline


def print_json(obj: object) -> None:
    """Typed results (dataclasses, enums, times) as indented JSON."""
    print(json.dumps(to_plain(obj), ensure_ascii=False, indent=2, default=str))


def settings_of(args: argparse.Namespace) -> Settings:
    """The environment's settings (read once) with the command line's --data and --models."""
    return Settings.from_env().with_dirs(args.data, args.models)


def open_system(args: argparse.Namespace) -> Sightline:
    settings = settings_of(args)
    for folder in (settings.data_dir, *settings.data_dir.parents):  # the nearest part of --data that exists
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"the data folder {settings.data_dir} is a file" if folder == settings.data_dir
                                 else f"the data folder {settings.data_dir} cannot be made: {folder} is a file")
            break
    try:
        return Sightline(settings)
    except OSError as exc:  # a folder that cannot be made or opened (permissions, a read-only disk)
        raise InputError(f"the data folder {settings.data_dir} cannot be opened ({exc.strerror or exc})") from None


def time_range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    return trajectories.parse_range(args.start, args.end)
