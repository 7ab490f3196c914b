"""SQLite record store (WAL mode): the embedded default, one file in the data directory.

Times are stored as integer microseconds since the epoch (UTC) so range scans use
an index. The plate and other searchable attributes are columns; the full typed
attributes are JSON beside them.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from itertools import repeat
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from indexer.sqlite_conn import open_sqlite
from indexer.store import (
    DuplicateFrame,
    FrameRecord,
    Purged,
    ReadColumns,
    RecordStore,
    SightingQuery,
    StoredVector,
    VehicleColumns,
    split_by_dimension,
)
from models.records import Attributes, BBox, Camera, Sighting, TrackInfo, attributes_from_dict

SCHEMA = """
CREATE TABLE IF NOT EXISTS cameras (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, lon REAL NOT NULL, lat REAL NOT NULL,
    heading_deg REAL, kind TEXT NOT NULL, road TEXT, tags TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS frames (
    sha256 TEXT PRIMARY KEY, camera_id TEXT NOT NULL, ts_us INTEGER NOT NULL, source TEXT,
    n_sightings INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sightings (
    id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, ts_us INTEGER NOT NULL, kind TEXT NOT NULL,
    bbox TEXT NOT NULL, det_score REAL NOT NULL, crop TEXT, frame_sha256 TEXT,
    plate TEXT, plate_score REAL, plate_color TEXT, vehicle_type TEXT, vehicle_color TEXT,
    attributes TEXT NOT NULL, embedding_space TEXT, vector_id INTEGER, model_versions TEXT NOT NULL, track TEXT
);
CREATE INDEX IF NOT EXISTS sightings_plate ON sightings(plate, ts_us) WHERE plate IS NOT NULL;
CREATE INDEX IF NOT EXISTS sightings_camera_ts ON sightings(camera_id, ts_us);
CREATE INDEX IF NOT EXISTS sightings_ts ON sightings(ts_us);
CREATE INDEX IF NOT EXISTS sightings_kind_ts ON sightings(kind, ts_us);
CREATE INDEX IF NOT EXISTS sightings_frame ON sightings(frame_sha256);
CREATE TABLE IF NOT EXISTS plates (
    plate TEXT PRIMARY KEY, sightings INTEGER NOT NULL, first_us INTEGER NOT NULL, last_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    space TEXT NOT NULL, id INTEGER NOT NULL, sighting_id TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (space, id)
);
CREATE TABLE IF NOT EXISTS vector_watermarks (space TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
"""

_SIGHTING_COLUMNS = ("id, camera_id, ts_us, kind, bbox, det_score, crop, frame_sha256, plate, plate_score, "
                     "plate_color, vehicle_type, vehicle_color, attributes, embedding_space, vector_id, "
                     "model_versions, track")


def to_us(ts: datetime) -> int:
    return int(round(ts.timestamp() * 1_000_000))


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


class SQLiteStore(RecordStore):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = open_sqlite(path, "synchronous=NORMAL", "foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self.lock = threading.RLock()
        if (self.conn.execute("SELECT 1 FROM plates LIMIT 1").fetchone() is None
                and self.conn.execute("SELECT 1 FROM sightings WHERE plate IS NOT NULL LIMIT 1").fetchone()):
            # A store from before the plate dictionary existed: build it once from the sightings.
            self.conn.execute("INSERT INTO plates SELECT plate, COUNT(*), MIN(ts_us), MAX(ts_us) FROM sightings "
                              "WHERE plate IS NOT NULL GROUP BY plate")

    # cameras -----------------------------------------------------------------------------------
    def upsert_cameras(self, cameras: list[Camera]) -> int:
        rows = [(c.id, c.name, c.lon, c.lat, c.heading_deg, c.kind, c.road, json.dumps(c.tags, ensure_ascii=False))
                for c in cameras]
        with self.lock, self._tx():
            self.conn.executemany(
                "INSERT INTO cameras VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET name=excluded.name, "
                "lon=excluded.lon, lat=excluded.lat, heading_deg=excluded.heading_deg, kind=excluded.kind, "
                "road=excluded.road, tags=excluded.tags", rows)
        return len(rows)

    def get_camera(self, camera_id: str) -> Camera | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM cameras WHERE id=?", (camera_id,)).fetchone()
        return _camera(row) if row else None

    def list_cameras(self) -> list[Camera]:
        with self.lock:
            return [_camera(r) for r in self.conn.execute("SELECT * FROM cameras ORDER BY id")]

    # frames and sightings --------------------------------------------------------------------------
    def has_frame(self, sha256: str) -> bool:
        with self.lock:
            return self.conn.execute("SELECT 1 FROM frames WHERE sha256=?", (sha256,)).fetchone() is not None

    def add_frame(self, frame: FrameRecord, sightings: list[Sighting], vectors: list[StoredVector]) -> None:
        by_id = {s.id: s for s in sightings}
        with self.lock, self._tx():
            try:
                self.conn.execute("INSERT INTO frames VALUES (?,?,?,?,?)",
                                  (frame.sha256, frame.camera_id, to_us(frame.ts), frame.source, len(sightings)))
            except sqlite3.IntegrityError as exc:
                raise DuplicateFrame(frame.sha256) from exc
            for v in vectors:
                next_id = self._insert_vector(v)
                by_id[v.sighting_id].vector_id, by_id[v.sighting_id].embedding_space = next_id, v.space
            self.conn.executemany(f"INSERT INTO sightings ({_SIGHTING_COLUMNS}) VALUES ({','.join('?' * 18)})",
                                  [_sighting_row(s) for s in sightings])
            self._count_plates(sightings)

    def _insert_vector(self, v: StoredVector) -> int:
        """Inside a transaction: store a vector under an id past every id ever given in its space (an index may
        still hold a deleted one); returns the id."""
        next_id = int(self.conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM vectors WHERE space=?1), 0), "
            "COALESCE((SELECT last_id FROM vector_watermarks WHERE space=?1), 0)) + 1", (v.space,)).fetchone()[0])
        self.conn.execute("INSERT INTO vectors VALUES (?,?,?,?)",
                          (v.space, next_id, v.sighting_id, np.asarray(v.vector, np.float32).tobytes()))
        return next_id

    def replace_vectors(self, vectors: list[StoredVector], model: str) -> int:
        replaced = 0
        with self.lock, self._tx():
            for v in vectors:
                old = self.conn.execute("SELECT embedding_space, vector_id, model_versions FROM sightings WHERE id=?",
                                        (v.sighting_id,)).fetchone()
                if old is None:
                    continue
                if old[0] is not None and old[1] is not None:  # older than the new id: MAX(id) does not fall
                    self.conn.execute("DELETE FROM vectors WHERE space=? AND id=?", (old[0], old[1]))
                versions = {**json.loads(old[2]), "embedding": model}
                self.conn.execute("UPDATE sightings SET embedding_space=?, vector_id=?, model_versions=? WHERE id=?",
                                  (v.space, self._insert_vector(v), json.dumps(versions), v.sighting_id))
                replaced += 1
        return replaced

    def add_sightings(self, sightings: list[Sighting]) -> None:
        with self.lock, self._tx():
            self.conn.executemany(f"INSERT INTO sightings ({_SIGHTING_COLUMNS}) VALUES ({','.join('?' * 18)})",
                                  [_sighting_row(s) for s in sightings])
            self._count_plates(sightings)

    def _count_plates(self, sightings: list[Sighting]) -> None:
        """The distinct-plate dictionary that wildcard and fuzzy search run over (far fewer rows than sightings)."""
        rows = [(p, to_us(s.ts)) for s in sightings if (p := getattr(s.attributes, "plate", None))]
        self.conn.executemany("INSERT INTO plates VALUES (?, 1, ?2, ?2) ON CONFLICT(plate) DO UPDATE SET "
                              "sightings=sightings+1, first_us=MIN(first_us, excluded.first_us), "
                              "last_us=MAX(last_us, excluded.last_us)", rows)

    def plates_after(self, after_rowid: int) -> list[tuple[int, str, int]]:
        with self.lock:
            return self.conn.execute("SELECT rowid, plate, sightings FROM plates WHERE rowid > ? ORDER BY rowid",
                                     (after_rowid,)).fetchall()

    def plate_counts(self, plates: list[str]) -> dict[str, int]:
        if not plates:
            return {}
        with self.lock:
            rows = self.conn.execute(
                f"SELECT plate, sightings FROM plates WHERE plate IN ({','.join('?' * len(plates))})",
                plates).fetchall()
        return dict(rows)

    def get_sighting(self, sighting_id: str) -> Sighting | None:
        found = self.get_sightings([sighting_id])
        return found[0] if found else None

    def get_sightings(self, ids: list[str]) -> list[Sighting]:
        if not ids:
            return []
        with self.lock:
            rows = self.conn.execute(
                f"SELECT {_SIGHTING_COLUMNS} FROM sightings WHERE id IN ({','.join('?' * len(ids))})",
                ids).fetchall()
        by_id = {r[0]: _sighting(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def query(self, q: SightingQuery) -> list[Sighting]:
        where: list[str] = []
        args: list[object] = []
        if q.kind:
            # With a plate or cameras, their index is far more selective: the unary + keeps SQLite off the kind index.
            where.append("+kind=?" if (q.plate or q.camera_ids or q.frame_sha256) else "kind=?")
            args.append(q.kind)
        if q.camera_ids:
            where.append(f"camera_id IN ({','.join('?' * len(q.camera_ids))})")
            args.extend(q.camera_ids)
        if q.start:
            where.append("ts_us>=?")
            args.append(to_us(q.start))
        if q.end:
            where.append("ts_us<?")
            args.append(to_us(q.end))
        if q.plate:
            where.append("plate=?")
            args.append(q.plate)
        if q.frame_sha256:
            where.append("frame_sha256=?")
            args.append(q.frame_sha256)
        if q.ids is not None:
            where.append(f"id IN ({','.join('?' * len(q.ids))})" if q.ids else "0")
            args.extend(q.ids)
        for name, value in q.attributes.items():
            # vehicle columns are indexed; person attributes live in the JSON
            column = name if name in ("vehicle_type", "vehicle_color", "plate_color") else \
                f"json_extract(attributes, '$.{name}')"
            values = list(value) if isinstance(value, tuple) else [int(value) if isinstance(value, bool) else value]
            where.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
            args.extend(values)
        for score in q.attributes.scored():
            where.append(f"json_extract(attributes, '$.{score}')>=?")
            args.append(q.attributes.min_confidence)
        sql = f"SELECT {_SIGHTING_COLUMNS} FROM sightings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY ts_us {'DESC' if q.newest_first else 'ASC'}, id LIMIT ? OFFSET ?"
        with self.lock:
            rows = self.conn.execute(sql, [*args, q.limit, q.offset]).fetchall()
        return [_sighting(r) for r in rows]

    def count(self, kind: str | None = None) -> int:
        with self.lock:
            if kind:
                return self.conn.execute("SELECT COUNT(*) FROM sightings WHERE kind=?", (kind,)).fetchone()[0]
            return self.conn.execute("SELECT COUNT(*) FROM sightings").fetchone()[0]

    # vectors -----------------------------------------------------------------------------------
    def vectors_after(self, space: str, after_id: int, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = after_id
        while True:
            with self.lock:
                rows = self.conn.execute("SELECT id, vector FROM vectors WHERE space=? AND id>? ORDER BY id LIMIT ?",
                                         (space, last, batch)).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            yield from split_by_dimension(ids, [np.frombuffer(r[1], dtype=np.float32) for r in rows])
            last = int(ids[-1])

    def stale_vectors(self, space: str, model: str, batch: int = 10_000) -> Iterator[list[int]]:
        where = ("embedding_space = ? AND vector_id IS NOT NULL "
                 "AND json_extract(model_versions, '$.embedding') IS NOT ?")
        for rows in self._sighting_pages("id, vector_id", where, (space, model), batch):
            yield [int(r[1]) for r in rows]

    def stale_attributes(self, kind: str, version: str, batch: int = 1_000) -> Iterator[list[str]]:
        where = "kind = ? AND json_extract(model_versions, '$.attributes') IS NOT ?"
        for rows in self._sighting_pages("id", where, (kind, version), batch):
            yield [r[0] for r in rows]

    def _sighting_pages(self, columns: str, where: str, args: tuple[object, ...], batch: int
                        ) -> Iterator[list[tuple]]:
        """`columns` (the id first) of the sightings matching `where`, a page at a time by sighting id (the primary
        key): a page costs its own rows, and replacing what a page names moves nothing."""
        last = ""
        while True:
            with self.lock:
                rows = self.conn.execute(f"SELECT {columns} FROM sightings WHERE id > ? AND {where} "
                                         "ORDER BY id LIMIT ?", (last, *args, batch)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield rows

    def replace_attributes(self, updates: list[tuple[str, Attributes]], version: str) -> int:
        changed = 0
        with self.lock, self._tx():
            for sighting_id, attributes in updates:
                old = self.conn.execute("SELECT model_versions FROM sightings WHERE id=?", (sighting_id,)).fetchone()
                if old is None:
                    continue
                attrs = asdict(attributes)
                versions = json.dumps({**json.loads(old[0]), "attributes": version})
                self.conn.execute(
                    "UPDATE sightings SET attributes=?, vehicle_type=?, vehicle_color=?, model_versions=? WHERE id=?",
                    (json.dumps(attrs, ensure_ascii=False), attrs.get("vehicle_type"), attrs.get("vehicle_color"),
                     versions, sighting_id))
                changed += 1
        return changed

    def sighting_ids_for_vectors(self, space: str, vector_ids: list[int]) -> dict[int, str]:
        if not vector_ids:
            return {}
        with self.lock:
            rows = self.conn.execute(
                f"SELECT id, sighting_id FROM vectors WHERE space=? AND id IN ({','.join('?' * len(vector_ids))})",
                [space, *vector_ids]).fetchall()
        return {int(r[0]): r[1] for r in rows}

    def delete_sightings(self, before: datetime | None = None, camera_ids: list[str] | None = None,
                         ids: list[str] | None = None, batch: int = 10_000) -> Purged:
        if (before is None) == (ids is None):
            raise ValueError("delete by time (before) or by ids, one of the two")
        where: list[str] = []
        args: list[object] = []
        if before is not None:
            where.append("ts_us < ?")
            args.append(to_us(before))
        if camera_ids:
            where.append(f"camera_id IN ({','.join('?' * len(camera_ids))})")
            args.extend(camera_ids)
        select = "SELECT id, crop, embedding_space, vector_id, plate, frame_sha256 FROM sightings WHERE "
        todo = list(ids or [])
        total = Purged()
        chunk_args: Sequence[object]
        while True:
            if ids is None:
                sql, chunk_args = select + " AND ".join(where) + " LIMIT ?", [*args, batch]
            else:
                chunk_args, todo = todo[:batch], todo[batch:]
                if not chunk_args:
                    break
                sql = select + f"id IN ({','.join('?' * len(chunk_args))})"
            with self.lock, self._tx():
                rows = self.conn.execute(sql, chunk_args).fetchall()
                if rows:
                    total.merge(self._delete_rows(rows))
            if ids is None and len(rows) < batch:
                break
        if before is not None:  # frames that held no sighting at all (frames have the same time and camera columns)
            with self.lock, self._tx():
                total.frames += self.conn.execute(
                    f"DELETE FROM frames WHERE {' AND '.join(where)} AND n_sightings = 0", args).rowcount
        return total

    def _delete_rows(self, rows: list[tuple]) -> Purged:
        """Inside a transaction: the sightings, their vectors, their plates' counts, and frames left empty."""
        done = Purged(sightings=len(rows), crops=[r[1] for r in rows if r[1]])
        for space, vector_id in ((r[2], r[3]) for r in rows if r[2] and r[3] is not None):
            done.vectors.setdefault(space, []).append(int(vector_id))
        for space, vector_ids in done.vectors.items():
            # The space's highest id before deleting (an index lookup): add_frame never gives it again.
            self.conn.execute("INSERT INTO vector_watermarks SELECT ?1, COALESCE(MAX(id), 0) FROM vectors "
                              "WHERE space=?1 "
                              "ON CONFLICT(space) DO UPDATE SET last_id=MAX(last_id, excluded.last_id)", (space,))
            self.conn.executemany("DELETE FROM vectors WHERE space=? AND id=?", [(space, i) for i in vector_ids])
        self.conn.executemany("DELETE FROM sightings WHERE id=?", [(r[0],) for r in rows])
        plates = Counter(r[4] for r in rows if r[4])
        self.conn.executemany("UPDATE plates SET sightings=sightings-? WHERE plate=?",
                              [(n, p) for p, n in plates.items()])
        self.conn.executemany("DELETE FROM plates WHERE plate=? AND sightings <= 0", [(p,) for p in plates])
        frames = sorted({r[5] for r in rows if r[5]})
        if frames:
            done.frames = self.conn.execute(
                f"DELETE FROM frames WHERE sha256 IN ({','.join('?' * len(frames))}) "
                "AND NOT EXISTS (SELECT 1 FROM sightings WHERE frame_sha256 = frames.sha256)", frames).rowcount
        return done

    def vector_count(self, space: str, dim: int | None = None) -> int:
        args: tuple[object, ...] = (space,)
        if dim is None:
            query = "SELECT COUNT(*) FROM vectors WHERE space=?"
        else:  # float32 blobs: 4 bytes a dimension
            query, args = "SELECT COUNT(*) FROM vectors WHERE space=? AND length(vector)=?", (space, 4 * dim)
        with self.lock:
            return int(self.conn.execute(query, args).fetchone()[0])

    def vector_ids(self, space: str) -> np.ndarray:
        with self.lock:
            rows = self.conn.execute("SELECT id FROM vectors WHERE space=? ORDER BY id", (space,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def camera_window(self, camera_id: str, start: datetime, end: datetime, kind: str = "vehicle"
                      ) -> list[tuple[str, str | None, datetime]]:
        with self.lock:
            # +kind: without it SQLite picks the (kind, ts) index and reads every camera's rows in the window.
            rows = self.conn.execute("SELECT id, plate, ts_us FROM sightings "
                                     "WHERE camera_id=? AND ts_us BETWEEN ? AND ? "
                                     "AND +kind=?", (camera_id, to_us(start), to_us(end), kind)).fetchall()
        return [(r[0], r[1], from_us(r[2])) for r in rows]

    def add_vehicle_columns(self, columns: VehicleColumns) -> None:
        c = columns
        rows = [(sid, cam, ts, "vehicle", "[0, 0, 0, 0]", 1.0, None, None, plate, score, None, vtype, color,
                 json.dumps({"plate": plate, "plate_score": score, "vehicle_type": vtype, "vehicle_color": color},
                            ensure_ascii=False), None, None, "{}", None)
                for sid, cam, ts, plate, score, color, vtype in zip(c.ids, c.camera_ids, c.ts_us.tolist(), c.plates,
                                                                    c.plate_scores.tolist(), c.vehicle_colors,
                                                                    c.vehicle_types, strict=True)]
        plates: dict[str, list[int]] = {}  # the plate dictionary takes one upsert per distinct plate, not per row
        for plate, ts in zip(c.plates, c.ts_us.tolist(), strict=True):
            seen = plates.get(plate)
            if seen is None:
                plates[plate] = [1, ts, ts]
            else:
                seen[0] += 1
                seen[1], seen[2] = min(seen[1], ts), max(seen[2], ts)
        with self.lock:
            cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
            self.conn.execute("PRAGMA cache_size=-1000000")  # 1 GB while loading: index pages stay in memory
            try:
                with self._tx():
                    self.conn.executemany(f"INSERT INTO sightings ({_SIGHTING_COLUMNS}) VALUES ({','.join('?' * 18)})",
                                          rows)
                    self.conn.executemany("INSERT INTO plates VALUES (?, ?, ?, ?) ON CONFLICT(plate) DO UPDATE SET "
                                          "sightings=sightings+excluded.sightings, "
                                          "first_us=MIN(first_us, excluded.first_us), "
                                          "last_us=MAX(last_us, excluded.last_us)",
                                          [(p, *v) for p, v in plates.items()])
            finally:
                self.conn.execute(f"PRAGMA cache_size={int(cache)}")

    def plate_read_columns(self, start: datetime | None, end: datetime | None, min_score: float,
                           batch: int = 1_000_000) -> Iterator[ReadColumns]:
        sql = "SELECT plate, camera_id, ts_us FROM sightings WHERE plate IS NOT NULL AND plate_score >= ?"
        args: list = [min_score]
        if start:
            sql += " AND ts_us >= ?"
            args.append(to_us(start))
        if end:
            sql += " AND ts_us < ?"
            args.append(to_us(end))
        # its own connection: WAL gives it a snapshot while ingestion goes on
        reader = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            reader.execute("BEGIN")  # one snapshot for the dictionaries and the reads
            # Plates and cameras are mapped with dictionaries here: a join per row costs SQLite more than
            # the whole ordered read (measured at 10M rows: 3x).
            plate_ids = {p: r for r, p in reader.execute("SELECT rowid, plate FROM plates")}
            cameras = reader.execute("SELECT id, lon, lat FROM cameras").fetchall()
            camera_index = {c[0]: i for i, c in enumerate(cameras)}
            lon = np.array([c[1] for c in cameras] + [np.nan])  # the last slot: a camera not registered
            lat = np.array([c[2] for c in cameras] + [np.nan])
            cursor = reader.execute(sql + " ORDER BY ts_us", args)
            while chunk := cursor.fetchmany(batch):
                plates, camera_ids, ts = zip(*chunk, strict=True)
                pid = np.fromiter(map(plate_ids.get, plates, repeat(-1)), np.int64, len(chunk))
                cam = np.fromiter(map(camera_index.get, camera_ids, repeat(-1)), np.int64, len(chunk))
                keep = (pid >= 0) & (cam >= 0)
                yield ReadColumns(pid[keep], lon[cam][keep], lat[cam][keep],
                                  np.fromiter(ts, np.int64, len(chunk))[keep])
            reader.execute("COMMIT")
        finally:
            reader.close()

    def plate_names(self, plate_ids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self.lock:
            for i in range(0, len(plate_ids), 5_000):
                part = [int(p) for p in plate_ids[i:i + 5_000]]
                out.update(self.conn.execute(
                    f"SELECT rowid, plate FROM plates WHERE rowid IN ({','.join('?' * len(part))})",
                    part).fetchall())
        return out

    def get_vectors(self, space: str, vector_ids: list[int]) -> dict[int, np.ndarray]:
        if not vector_ids:
            return {}
        with self.lock:
            rows = self.conn.execute(
                f"SELECT id, vector FROM vectors WHERE space=? AND id IN ({','.join('?' * len(vector_ids))})",
                [space, *vector_ids]).fetchall()
        return {int(r[0]): np.frombuffer(r[1], dtype=np.float32) for r in rows}

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error: a crash leaves no partial frame."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _camera(row: tuple) -> Camera:
    return Camera(id=row[0], name=row[1], lon=row[2], lat=row[3], heading_deg=row[4], kind=row[5], road=row[6],
                  tags=json.loads(row[7]))


def _sighting_row(s: Sighting) -> tuple:
    attrs = asdict(s.attributes)
    return (s.id, s.camera_id, to_us(s.ts), s.kind, json.dumps(s.bbox.as_list()), s.det_score, s.crop,
            s.frame_sha256, attrs.get("plate"), attrs.get("plate_score"), attrs.get("plate_color"),
            attrs.get("vehicle_type"), attrs.get("vehicle_color"), json.dumps(attrs, ensure_ascii=False),
            s.embedding_space, s.vector_id, json.dumps(s.model_versions),
            json.dumps(s.track.to_json()) if s.track else None)


def _sighting(row: tuple) -> Sighting:
    return Sighting(id=row[0], camera_id=row[1], ts=from_us(row[2]), kind=row[3], bbox=BBox(*json.loads(row[4])),
                    det_score=row[5], crop=row[6], frame_sha256=row[7],
                    attributes=attributes_from_dict(row[3], json.loads(row[13])), embedding_space=row[14],
                    vector_id=row[15], model_versions=json.loads(row[16]),
                    track=TrackInfo.from_json(json.loads(row[17])) if row[17] else None)
