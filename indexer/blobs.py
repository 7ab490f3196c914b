"""The blob store: evidence crops by key. Files under the data folder are the embedded default; a
shared object store plugs in behind the same interface when API replicas and workers run apart."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path


class BlobStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The blob's bytes, or None when it is missing."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove a blob; False when there was none."""

    @abstractmethod
    def keys(self, modified_before: datetime | None = None) -> Iterator[str]:
        """Every stored key (written before `modified_before`, when given), a crashed write's leftover
        included, so that retention can find and remove the blobs nothing refers to."""


class FileBlobStore(BlobStore):
    """One file per key under a folder; written to a temporary name and renamed, so a crash leaves no half file."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, key: str) -> Path:
        path = (self.directory / key).resolve()
        if self.directory.resolve() not in path.parents:
            raise KeyError(f"blob key {key!r} leaves the store")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, KeyError):
            return None

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except (FileNotFoundError, KeyError):
            return False

    def keys(self, modified_before: datetime | None = None) -> Iterator[str]:
        """Relative paths of the files under the folder (the `.name.pid.tmp` of a write that crashed included)."""
        cutoff = modified_before.timestamp() if modified_before is not None else None
        if not self.directory.is_dir():
            return
        for folder, _, files in os.walk(self.directory):
            for name in sorted(files):
                path = Path(folder) / name
                try:
                    if cutoff is not None and path.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield path.relative_to(self.directory).as_posix()
