"""The blob store: evidence crops by key. Files under the data folder are the embedded default; a
shared object store plugs in behind the same interface when API replicas and workers run apart."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
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
