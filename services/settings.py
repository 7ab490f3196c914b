"""The one settings object: every knob of a deployment, read from the environment once and checked.

Entry points call `Settings.from_env()` (the CLI then applies --data/--models); tests build
`Settings(...)` directly. Nothing below this module reads the environment.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from indexer.vectors import EXACT_LIMIT, GRAPH_LIMIT, NPROBE
from models.records import InputError
from models.registry import default_model_dir
from services.ingest import PARALLEL_BATCHES

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO.parent / "shared" / "eval"  # the shared eval data beside the checkout
ROADNET = EVAL_DIR / "roadnet" / "shanghai_intersections.geojson"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    model_dir: Path = field(default_factory=default_model_dir)
    store_backend: str = "sqlite"
    vector_backend: str = "faiss"
    max_upload_bytes: int = 50 << 20
    faces: bool = True
    # Look for faces in frames where no person was detected too (models/pipeline.py: Pipeline.detect_faces)
    faces_without_people: bool = False
    # Keep this many days of sightings (None: keep everything); the API applies it hourly.
    retention_days: float | None = None
    # Keep uploaded photos (the original frames, for evidence packages) this many days, at most as long as their
    # sightings; None: as long as the sightings; 0: never keep them.
    frame_retention_days: float | None = None
    # Vector indexes: exact search up to this many vectors a space, then an HNSW graph up to graph_limit, then a
    # compressed IVF with nprobe lists probed.
    exact_limit: int = EXACT_LIMIT
    graph_limit: int = GRAPH_LIMIT
    nprobe: int = NPROBE
    # Ingest: batches of frames the models run on at once (services/ingest.py); more cores may want more
    parallel_batches: int = PARALLEL_BATCHES
    # The map's base layer: a GeoJSON of roads drawn offline, and optionally a tile server for online sites.
    roads_geojson: Path | None = field(default_factory=lambda: ROADNET if ROADNET.is_file() else None)
    tile_url: str | None = None
    web_dir: Path = REPO / "web"
    # Outbound requests (webhooks, streams) may reach loopback, private or link-local addresses only when
    # named here: host names, IP addresses or networks (CIDR). Public addresses need no entry.
    outbound_allow: tuple[str, ...] = ()
    secure_cookies: bool = False  # set behind TLS: session cookies then travel over HTTPS only
    # Failed sign-ins (wrong tokens) one address may make in a minute before its tries are refused with 429.
    failed_sign_in_limit: int = 10
    # Scale-out: the Redis URL (redis://HOST:PORT/DB) of the frame queue that `sightline worker`s consume; the API
    # then reports the queue on /health and /metrics and shows alerts raised by the workers on its SSE stream.
    queue: str | None = None
    # Frigate (or another NVR speaking its MQTT events): the broker (mqtt://HOST:PORT), Frigate's HTTP API for the
    # snapshots (its host must pass the outbound policy), and the topic prefix. With the broker alone, alerts are
    # still published to it (sightline/alerts).
    mqtt_url: str | None = None
    frigate_url: str | None = None
    frigate_prefix: str = "frigate"
    # Elasticsearch (SIGHTLINE_STORE=elasticsearch and/or SIGHTLINE_VECTORS=elasticsearch): the cluster's URL, how
    # to sign in (an API key, or a user and password; kept out of repr so they never reach a log), the CA file that
    # signed its TLS certificate, and the prefix of every index name (several deployments can share a cluster).
    es_url: str | None = None
    es_api_key: str | None = field(default=None, repr=False)
    es_user: str | None = None
    es_password: str | None = field(default=None, repr=False)
    es_ca_certs: Path | None = None
    es_prefix: str = "sightline"
    # An ingest that someone waits on returns only when its sightings are searchable; queue workers skip the wait.
    es_visible_on_commit: bool = True
    # Crops and frames in a folder that several machines mount (SIGHTLINE_BLOBS); None: <data>/crops, one machine.
    blobs_dir: Path | None = None
    # The audit log's key and its signed checkpoint live outside the data folder, so that whoever can rewrite the
    # data cannot reseal the log nor hide its truncation: by default in the folder `<data>.audit` beside it; a site
    # puts the key in a secret store and the checkpoint on another disk (every replica of a cluster uses one key).
    audit_key_file: Path | None = None
    audit_checkpoint: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The defaults with every SIGHTLINE_* variable that is set; a bad value is an InputError naming it."""
        env = os.environ if env is None else env
        base = cls()
        def get(name: str) -> str | None:
            return env.get(name) or None  # an empty variable counts as unset

        def number(name: str, low: float, high: float, default: float) -> float:
            value = _number(env, name, low, high, default)
            return default if value is None else value

        def switched_on(name: str) -> bool:
            return _switch(name, get(name))

        roads = get("SIGHTLINE_ROADS")
        return replace(
            base,
            data_dir=Path(get("SIGHTLINE_DATA") or base.data_dir).resolve(),
            model_dir=Path(get("SIGHTLINE_MODEL_DIR") or base.model_dir).resolve(),
            store_backend=get("SIGHTLINE_STORE") or base.store_backend,
            vector_backend=get("SIGHTLINE_VECTORS") or base.vector_backend,
            max_upload_bytes=int(number("SIGHTLINE_MAX_UPLOAD_MB", 1, 10_000, base.max_upload_bytes >> 20)) << 20,
            retention_days=_number(env, "SIGHTLINE_RETENTION_DAYS", 1e-3, 36_500, None),
            frame_retention_days=_number(env, "SIGHTLINE_FRAME_RETENTION_DAYS", 0, 36_500, None),
            exact_limit=int(number("SIGHTLINE_EXACT_LIMIT", 1, 1e9, base.exact_limit)),
            graph_limit=int(number("SIGHTLINE_GRAPH_LIMIT", 0, 1e9, base.graph_limit)),
            nprobe=int(number("SIGHTLINE_NPROBE", 1, 65_536, base.nprobe)),
            parallel_batches=int(number("SIGHTLINE_PARALLEL_BATCHES", 1, 64, base.parallel_batches)),
            roads_geojson=Path(roads).resolve() if roads else base.roads_geojson,
            tile_url=get("SIGHTLINE_TILE_URL"),
            web_dir=Path(get("SIGHTLINE_WEB_DIR") or base.web_dir).resolve(),
            secure_cookies=switched_on("SIGHTLINE_SECURE_COOKIES"),
            failed_sign_in_limit=int(number("SIGHTLINE_FAILED_SIGNIN_LIMIT", 1, 1e6, base.failed_sign_in_limit)),
            faces_without_people=switched_on("SIGHTLINE_FACES_WITHOUT_PEOPLE"),
            outbound_allow=tuple(x.strip() for x in (get("SIGHTLINE_OUTBOUND_ALLOW") or "").split(",") if x.strip()),
            queue=get("SIGHTLINE_QUEUE"),
            mqtt_url=get("SIGHTLINE_MQTT"),
            frigate_url=get("SIGHTLINE_FRIGATE_URL"),
            frigate_prefix=get("SIGHTLINE_FRIGATE_PREFIX") or base.frigate_prefix,
            es_url=get("SIGHTLINE_ES_URL"),
            es_api_key=get("SIGHTLINE_ES_API_KEY"),
            es_user=get("SIGHTLINE_ES_USER"),
            es_password=get("SIGHTLINE_ES_PASSWORD"),
            es_ca_certs=Path(ca).resolve() if (ca := get("SIGHTLINE_ES_CA_CERTS")) else None,
            es_prefix=_es_prefix(get("SIGHTLINE_ES_PREFIX") or base.es_prefix),
            blobs_dir=Path(blobs).resolve() if (blobs := get("SIGHTLINE_BLOBS")) else None,
            audit_key_file=Path(key).resolve() if (key := get("SIGHTLINE_AUDIT_KEY_FILE")) else None,
            audit_checkpoint=Path(cp).resolve() if (cp := get("SIGHTLINE_AUDIT_CHECKPOINT")) else None,
        )

    def with_dirs(self, data_dir: str | None, model_dir: str | None) -> Settings:
        """These settings with the data and model folders a command line named (None keeps them)."""
        return replace(self, data_dir=Path(data_dir).resolve() if data_dir else self.data_dir,
                       model_dir=Path(model_dir).resolve() if model_dir else self.model_dir)

    @property
    def crops_dir(self) -> Path:
        return self.data_dir / "crops"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.data_dir.with_name(self.data_dir.name + ".audit") / "audit.key"

    @property
    def audit_checkpoint_path(self) -> Path:
        return self.audit_checkpoint or self.data_dir.with_name(self.data_dir.name + ".audit") / "checkpoint.json"


def _es_prefix(text: str) -> str:
    """Index names must be lowercase, without spaces or the characters Elasticsearch reserves."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", text):
        raise InputError(f"SIGHTLINE_ES_PREFIX={text!r}: use lowercase letters, digits, '-', '_' or '.'")
    return text


def _switch(name: str, text: str | None) -> bool:
    """An on/off variable: unset is off; a value that is neither (say "enabled") is refused, not read as off."""
    value = (text or "off").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{name}={text!r} must be on or off (1/true/yes/on or 0/false/no/off)")


def _number(env: Mapping[str, str], name: str, low: float, high: float, default: float | None) -> float | None:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError(f"{name}={text!r} must be between {low:g} and {high:g}")
    return value
