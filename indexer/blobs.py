"""The blob store: evidence crops by key. Files under the data folder are the embedded default; a folder that
several machines mount (SharedFolderBlobStore) serves API replicas and workers that run apart, and an object
store would plug in behind the same interface."""
from __future__ import annotations

import contextlib
import os
import tempfile
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
    def keys(self, modified_before: datetime | None = None, prefix: str = "") -> Iterator[str]:
        """Every stored key (written before `modified_before`, when given; under `prefix`, a folder such as
        "frames/", when given), a crashed write's leftover included, so that retention can find and remove the
        blobs nothing refers to."""


class FileBlobStore(BlobStore):
    """One file per key under a folder; written to a temporary name and renamed, so a crash leaves no half file."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, key: str) -> Path:
        path = (self.directory / key).resolve()
        if self.directory.resolve() not in path.parents:
            raise KeyError(f"blob key {key!r} leaves the store")
        return path

    durable = False  # fsync before the rename (SharedFolderBlobStore): a local crop can be re-derived, cheaply lost

    def put(self, key: str, data: bytes) -> None:
        """Write to a unique temporary file beside the target, then rename it over the target: readers see the old
        blob or the new one, never part of one, and two writers of one key (threads, or machines sharing the
        folder) each rename a whole file, the last one winning."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)  # exist_ok: another writer may make it at the same moment
        # mkstemp opens with O_EXCL: the name is this writer's alone, whatever pid another machine's writer has
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o640)  # mkstemp's 0600 would hide the blob from the other machines' group
                f.write(data)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)  # the same folder, so the same file system: an atomic rename
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.durable:
            _fsync_dir(path.parent)

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

    def keys(self, modified_before: datetime | None = None, prefix: str = "") -> Iterator[str]:
        """Relative paths of the files under the folder (the `.name.XXXX.tmp` of a write that crashed included)."""
        cutoff = modified_before.timestamp() if modified_before is not None else None
        top = self._path(prefix.rstrip("/")) if prefix else self.directory
        if not top.is_dir():
            return
        for folder, _, files in os.walk(top):
            for name in sorted(files):
                path = Path(folder) / name
                try:
                    if cutoff is not None and path.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield path.relative_to(self.directory).as_posix()


class SharedFolderBlobStore(FileBlobStore):
    """A folder that several machines mount (NFS, SMB, a cluster file system; SIGHTLINE_BLOBS): workers write
    crops that the API replicas serve. Each blob is fsynced before its rename and the folder after it, so a blob
    an ingest has committed survives the crash of the machine that wrote it or of the file server."""

    durable = True


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; a file system that cannot fsync a folder (some network ones) is skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
