"""The composition root: the one place that builds, wires and closes the whole system from Settings.

The HTTP API, the CLI, benchmarks and tests all open `Sightline(settings)` and hand each adapter
the use-cases it needs (search, ingestion, watchlists, retention...), never this object itself.
A backend is chosen here, by name, from a table — nowhere else in the code.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from indexer.accounts_store import AccountStore
from indexer.alert_store import AlertStore
from indexer.audit_store import AuditStore
from indexer.blobs import BlobStore, FileBlobStore
from indexer.plate_index import PlateDictionary
from indexer.sqlite_store import SQLiteStore
from indexer.store import RecordStore
from indexer.vectors import FaissIndex, VectorIndex
from models.imageops import decode_image
from models.observations import FramePipeline
from models.records import InputError
from models.spaces import SPACES
from services.accounts import Accounts
from services.alerts import RuleEngine
from services.audit import AuditLog
from services.delivery import AlertDelivery
from services.ingest import Ingestor
from services.outbound import OutboundPolicy
from services.retention import Retention, RetentionWorker
from services.search import SearchService
from services.settings import Settings
from services.watchlists import WatchlistService

STORE_BACKENDS: dict[str, Callable[[Settings], RecordStore]] = {
    "sqlite": lambda s: SQLiteStore(s.data_dir / "sightline.db"),
}
VECTOR_BACKENDS: dict[str, Callable[[Settings, str, int, RecordStore], VectorIndex]] = {
    "faiss": lambda s, space, dim, store: FaissIndex(s.index_dir, space, dim, store, s.exact_limit, s.nprobe),
}


def _backend(table: dict, name: str, what: str):  # noqa: ANN202 - one of the tables above
    if name not in table:
        raise InputError(f"unknown {what} backend {name!r}; choose one of {sorted(table)}")
    return table[name]


class Sightline:
    """The opened system. Models load on first use, so queries never pay for them; `pipeline` may be given
    (tests pass a fake one, benchmarks share one loaded set of models between systems)."""

    def __init__(self, settings: Settings, pipeline: FramePipeline | None = None):
        self.settings = settings
        if settings.data_dir.exists() and not settings.data_dir.is_dir():
            raise InputError(f"the data folder {settings.data_dir} is a file")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        make_store = _backend(STORE_BACKENDS, settings.store_backend, "record store")
        make_index = _backend(VECTOR_BACKENDS, settings.vector_backend, "vector index")
        self._pipeline = pipeline
        self._pipeline_lock = threading.Lock()
        self.store: RecordStore = make_store(settings)
        self.indexes: dict[str, VectorIndex] = {space: make_index(settings, space, dim, self.store)
                                                for space, dim in SPACES.items()}
        self.blobs: BlobStore = FileBlobStore(settings.crops_dir)
        self.alert_store = AlertStore(settings.data_dir / "alerts.db")
        self.plates = PlateDictionary(self.store)
        self.outbound = OutboundPolicy(settings.outbound_allow)  # where webhooks and streams may connect
        self.delivery = AlertDelivery(self.alert_store, self.outbound)
        self.rules = RuleEngine(self.alert_store, self.store, self.delivery)
        self.watchlists = WatchlistService(self.alert_store, self.rules, self._face_vector)
        self.ingestor = Ingestor(self.store, self.indexes, self.blobs, self.get_pipeline, listeners=[self.rules.check])
        self.search = SearchService(self.store, self.indexes, self.plates, self.blobs, self.get_pipeline)
        self.retention = Retention(self.store, self.indexes, self.blobs, self.alert_store)
        self.accounts = Accounts(AccountStore(settings.data_dir / "accounts.db"))
        self.audit = AuditLog(AuditStore(settings.data_dir / "audit.db"))  # never purged with sightings
        self._workers: list[RetentionWorker] = []

    def get_pipeline(self) -> FramePipeline:
        with self._pipeline_lock:
            if self._pipeline is None:
                from models.pipeline import Pipeline  # the models load only when a frame is processed

                self._pipeline = Pipeline(self.settings.model_dir, faces=self.settings.faces)
            return self._pipeline

    @property
    def pipeline(self) -> FramePipeline:
        return self.get_pipeline()

    def _face_vector(self, photo: bytes) -> np.ndarray:
        """The face vector of an enrolment photo: its subject face; a photo without one is refused."""
        face = self.get_pipeline().subject_face(decode_image(photo))
        if face is None:
            raise InputError("no face was found in the enrolment photo")
        return face.vector

    def start(self) -> None:
        """The background work of a long-running process: webhook delivery, and the retention policy."""
        self.delivery.start()
        if self.settings.retention_days is not None and not self._workers:
            worker = RetentionWorker(self.retention, self.settings.retention_days)
            worker.start()
            self._workers.append(worker)

    def save_indexes(self) -> None:
        for index in self.indexes.values():
            index.save()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self.delivery.stop()
        self.save_indexes()
        self.alert_store.close()
        self.accounts.store.close()
        self.audit.store.close()
        self.store.close()

    def __enter__(self) -> Sightline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

