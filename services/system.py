"""The composition root: the one place that builds, wires and closes the whole system from Settings.

The HTTP API, the CLI, benchmarks and tests all open `Sightline(settings)` and hand each adapter
the use-cases it needs (search, ingestion, watchlists, retention...), never this object itself.
A backend is chosen here, by name, from a table — nowhere else in the code.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from elasticsearch import Elasticsearch

from indexer.accounts_store import AccountStore, SQLiteAccountStore
from indexer.alert_store import AlertStore, SQLiteAlertStore
from indexer.audit_store import AuditKey, AuditStore, SQLiteAuditStore
from indexer.blobs import BlobStore, FileBlobStore, SharedFolderBlobStore
from indexer.case_store import CaseStore, SQLiteCaseStore
from indexer.es_accounts import ElasticsearchAccountStore
from indexer.es_alerts import ElasticsearchAlertStore
from indexer.es_audit import ElasticsearchAuditStore
from indexer.es_cases import ElasticsearchCaseStore
from indexer.es_common import ESConnection
from indexer.es_store import ElasticsearchStore
from indexer.es_vectors import ElasticsearchVectorIndex
from indexer.plate_index import PlateDictionary
from indexer.sqlite_store import SQLiteStore
from indexer.store import RecordStore
from indexer.vectors import FaissIndex, StoreOnlyIndex, VectorIndex
from models.imageops import decode_image
from models.observations import FramePipeline
from models.records import InputError
from models.rerank import Verifier
from models.spaces import SPACES
from services.accounts import Accounts
from services.alerts import RuleEngine
from services.audit import AuditLog, Checkpoints
from services.cases import CaseService
from services.delivery import AlertDelivery
from services.evidence import EvidencePackager
from services.exports import ExportJobs
from services.ingest import Ingestor
from services.outbound import OutboundPolicy
from services.queue import AlertRelay, RedisFrameQueue
from services.retention import Retention, RetentionWorker
from services.search import SearchService
from services.settings import Settings
from services.sources import FrameSource
from services.sources.mqtt import FrigateSource, MqttAlertPublisher
from services.watchlists import WatchlistService

STORE_BACKENDS: dict[str, Callable[[Settings], RecordStore]] = {
    "sqlite": lambda s: SQLiteStore(s.data_dir / "sightline.db"),
    "elasticsearch": lambda s: ElasticsearchStore(_es(s).client(), s.es_prefix,
                                                  visible_on_commit=s.es_visible_on_commit),
}
VECTOR_BACKENDS: dict[str, Callable[[Settings, str, int, RecordStore], VectorIndex]] = {
    "faiss": lambda s, space, dim, store: FaissIndex(s.index_dir, space, dim, store, s.exact_limit, s.nprobe,
                                                     s.graph_limit),
    "store-only": lambda s, space, dim, store: StoreOnlyIndex(space),  # writers only: it answers no search
    "elasticsearch": lambda s, space, dim, store: ElasticsearchVectorIndex(_es(s).client(), s.es_prefix, space, dim,
                                                                           store, s.exact_limit),
}


WRITE_ONLY_VECTOR_BACKENDS = {"store-only"}  # outside the vector contract: they keep nothing to search

T = TypeVar("T")


def _kept_beside_records(sqlite: Callable[[Path], T], db: str, elasticsearch: Callable[[Elasticsearch, str], T]
                         ) -> dict[str, Callable[[Settings], T]]:
    """A store that lives where the records do, by the record store's name (`_beside_records` opens it): SQLite's
    file `db` in the data folder, or its indices in the cluster."""
    return {"sqlite": lambda s: sqlite(s.data_dir / db),
            "elasticsearch": lambda s: elasticsearch(_es(s).client(), s.es_prefix)}


AUDIT_BACKENDS: dict[str, Callable[[Settings], AuditStore]] = _kept_beside_records(
    SQLiteAuditStore, "audit.db", ElasticsearchAuditStore)
ALERT_BACKENDS: dict[str, Callable[[Settings], AlertStore]] = _kept_beside_records(
    SQLiteAlertStore, "alerts.db", ElasticsearchAlertStore)
ACCOUNT_BACKENDS: dict[str, Callable[[Settings], AccountStore]] = _kept_beside_records(
    SQLiteAccountStore, "accounts.db", ElasticsearchAccountStore)
CASE_BACKENDS: dict[str, Callable[[Settings], CaseStore]] = _kept_beside_records(
    SQLiteCaseStore, "cases.db", ElasticsearchCaseStore)


def _es(settings: Settings) -> ESConnection:
    """The cluster the Elasticsearch backends use; naming one without SIGHTLINE_ES_URL is a configuration error."""
    if not settings.es_url:
        raise InputError("the elasticsearch backend needs SIGHTLINE_ES_URL (e.g. https://es01:9200)")
    return ESConnection(settings.es_url, settings.es_api_key, settings.es_user, settings.es_password,
                        str(settings.es_ca_certs) if settings.es_ca_certs else None)


def _blobs(settings: Settings) -> BlobStore:
    """Crops in a folder several machines share (SIGHTLINE_BLOBS), else under this machine's data folder."""
    return SharedFolderBlobStore(settings.blobs_dir) if settings.blobs_dir else FileBlobStore(settings.crops_dir)


def _beside_records(table: dict[str, Callable[[Settings], T]], settings: Settings) -> T:
    """Open the store of `table` that lives where the records do (Elasticsearch's for the elasticsearch record
    store, so that every machine shares it; else SQLite's in the data folder)."""
    return table.get(settings.store_backend, table["sqlite"])(settings)


def _audit_log(settings: Settings) -> AuditLog:
    """The log where the records are, sealed by the key and checkpointed in the places the settings name, which
    must lie outside the data folder (a key beside the data it seals protects nothing)."""
    key_path, checkpoint = settings.audit_key_path, settings.audit_checkpoint_path
    for path, what in ((key_path, "SIGHTLINE_AUDIT_KEY_FILE"), (checkpoint, "SIGHTLINE_AUDIT_CHECKPOINT")):
        if path.resolve().is_relative_to(settings.data_dir.resolve()):
            raise InputError(f"{what}={path} lies inside the data folder {settings.data_dir}: keep it elsewhere")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {path.parent} ({what}): {exc.strerror}") from None
    key = AuditKey.load_or_create(key_path)
    return AuditLog(_beside_records(AUDIT_BACKENDS, settings), key, Checkpoints(checkpoint, key))


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
        self.blobs: BlobStore = _blobs(settings)
        # watchlists, rules, alerts and deliveries: shared by every replica and worker with Elasticsearch
        self.alert_store: AlertStore = _beside_records(ALERT_BACKENDS, settings)
        self.plates = PlateDictionary(self.store)
        self.outbound = OutboundPolicy(settings.outbound_allow)  # where webhooks and streams may connect
        self.delivery = AlertDelivery(self.alert_store, self.outbound)
        self.rules = RuleEngine(self.alert_store, self.store, self.delivery)
        self.watchlists = WatchlistService(self.alert_store, self.rules, self._face_vector)
        self.verifier = Verifier()  # vehicles' local features: written by ingest, matched by photo search
        self.ingestor = Ingestor(self.store, self.indexes, self.blobs, self.get_pipeline, listeners=[self.rules.check],
                                 verifier=self.verifier, parallel_batches=settings.parallel_batches,
                                 keep_frames=settings.frame_retention_days != 0)
        self.search = SearchService(self.store, self.indexes, self.plates, self.blobs, self.get_pipeline,
                                    self.verifier)
        self.retention = Retention(self.store, self.indexes, self.blobs, self.alert_store)
        self.accounts = Accounts(_beside_records(ACCOUNT_BACKENDS, settings))
        self.audit = _audit_log(settings)  # never purged with sightings
        self.cases = CaseService(_beside_records(CASE_BACKENDS, settings), self.store)  # kept past retention
        self.evidence = EvidencePackager(self.cases, self.store, self.blobs, settings.roads_geojson,
                                         self.audit.checkpoint)
        self.exports = ExportJobs(self.evidence, settings.data_dir / "exports")  # packages built in the background
        self._workers: list[RetentionWorker] = []
        # Scale-out (SIGHTLINE_QUEUE): the frame queue, and alerts relayed between this process and the others.
        self.queue: RedisFrameQueue | None = None
        self.relay: AlertRelay | None = None
        if settings.queue:
            self.queue = RedisFrameQueue(settings.queue, settings.max_upload_bytes)
            self.relay = AlertRelay(self.queue)
            self.delivery.relays.append(self.relay.publish)
        self.sources: list[FrameSource] = []  # started by start(): a long-running process's, not every command's
        self.mqtt_alerts: MqttAlertPublisher | None = None
        if settings.mqtt_url:
            self.mqtt_alerts = MqttAlertPublisher(settings.mqtt_url, self.outbound, self._watchlist_of_rule)
            self.delivery.relays.append(self.mqtt_alerts.publish)
            if settings.frigate_url:
                self.sources.append(FrigateSource(settings.mqtt_url, settings.frigate_url, self.ingestor,
                                                  self.outbound, self._registered_camera, settings.frigate_prefix,
                                                  settings.max_upload_bytes))

    def get_pipeline(self) -> FramePipeline:
        with self._pipeline_lock:
            if self._pipeline is None:
                from models.pipeline import Pipeline  # the models load only when a frame is processed

                self._pipeline = Pipeline(self.settings.model_dir, faces=self.settings.faces,
                                          faces_without_people=self.settings.faces_without_people)
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

    def _registered_camera(self, name: str) -> str | None:
        """An NVR's camera name as a Sightline camera id: the camera registered under that id, if any."""
        return name if name and self.store.get_camera(name) is not None else None

    def _watchlist_of_rule(self, rule_id: str) -> str | None:
        """From the rule engine's compiled rules (the rule raised the alert here): no store read per alert."""
        return next((r.watchlist_id for r in self.rules.rules if r.id == rule_id), None)

    def start(self) -> None:
        """The background work of a long-running process: webhook delivery, the retention policy, the sources."""
        self.delivery.start()
        if self.mqtt_alerts is not None:
            self.mqtt_alerts.start()
        for source in self.sources:
            source.start()
        if self.relay is not None:
            self.relay.listen(self.delivery.relayed)  # alerts raised by the queue's workers reach our SSE clients
        kept = self.settings.frame_retention_days or None  # 0: none are kept, so none to drop
        if (self.settings.retention_days is not None or kept is not None) and not self._workers:
            worker = RetentionWorker(self.retention, self.settings.retention_days, frame_days=kept)
            worker.start()
            self._workers.append(worker)

    def save_indexes(self) -> None:
        for index in self.indexes.values():
            index.save()

    def close(self) -> None:
        for source in self.sources:
            source.stop()
        if self.mqtt_alerts is not None:
            self.mqtt_alerts.stop()
        for worker in self._workers:
            worker.stop()
        self.delivery.stop()
        if self.relay is not None:
            self.relay.stop()
        if self.queue is not None:
            self.queue.close()
        self.save_indexes()
        self.alert_store.close()
        self.accounts.store.close()
        self.audit.store.close()
        self.cases.store.close()
        self.store.close()

    def __enter__(self) -> Sightline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

