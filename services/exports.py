"""Evidence packages built in the background: a large case is not one request held for minutes.

`POST /cases/{id}/exports` starts a job and answers at once; the caller polls its progress and downloads the
ZIP when it is done. A job's state is a small JSON file beside its ZIP in `<data>/exports`, so any API replica
sharing the data folder can answer for it; one builder thread per process takes jobs in turn (a package reads
crops and frames one at a time, so memory stays flat whatever the case's size). Finished files are kept for
KEEP_S and then removed; a job whose builder stopped mid-way (the process died) is reported failed, not left
"building" forever.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from models.records import InputError
from services.evidence import EvidencePackager, NoFont
from services.report_text import LANGS

log = logging.getLogger(__name__)
KEEP_S = 24 * 3600.0  # a finished package stays downloadable this long
STALE_S = 600.0  # a job whose builder has not reported for this long has stopped


@dataclass
class ExportJob:
    id: str
    case_id: str
    by: str
    lang: str
    state: str = "queued"  # queued, building, done, failed
    done: int = 0  # steps of the build done (the findings, gathered then drawn)
    total: int = 0
    error: str | None = None
    filename: str | None = None
    bytes: int = 0
    sightings: int = 0
    updated: float = 0.0  # time.time() of the last report


class ExportJobs:
    def __init__(self, packager: EvidencePackager, folder: Path):
        self.packager, self.folder = packager, folder
        self.todo: queue.Queue[ExportJob] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def start(self, case_id: str, by: str, lang: str) -> ExportJob:
        """Queue a package of the case (its checks — the case exists, the language — are made now)."""
        self.packager.cases.get(case_id)  # LookupError: no such case
        if lang not in LANGS:
            raise InputError(f"the report's language is one of {list(LANGS)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sweep()
        job = ExportJob(uuid.uuid4().hex[:16], case_id, by, lang, updated=time.time())
        self._save(job)
        self.todo.put(job)
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, daemon=True, name="exports")
                self.thread.start()
        return job

    def get(self, case_id: str, job_id: str) -> ExportJob:
        try:
            job = ExportJob(**json.loads(self._state(job_id).read_text()))
        except (OSError, ValueError, TypeError):
            raise LookupError(f"no export {job_id}") from None
        if job.case_id != case_id:
            raise LookupError(f"no export {job_id} of this case")
        if job.state in ("queued", "building") and time.time() - job.updated > STALE_S:
            job.state, job.error = "failed", "the server building it stopped: start the export again"
        return job

    def file(self, case_id: str, job_id: str) -> tuple[ExportJob, Path]:
        job = self.get(case_id, job_id)
        if job.state != "done":
            raise LookupError(f"export {job_id} is {job.state}, not done")
        return job, self._zip(job_id)

    def _run(self) -> None:
        while True:
            try:
                job = self.todo.get(timeout=60)
            except queue.Empty:
                return  # idle: the next start() starts a builder again
            self._build(job)

    def _build(self, job: ExportJob) -> None:
        job.state = "building"
        self._save(job)
        partial = self._zip(job.id).with_suffix(".part")

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total
            self._save(job)

        try:
            with open(partial, "wb") as out:
                package = self.packager.package(job.case_id, job.by, job.lang, out=out, progress=progress)
            os.replace(partial, self._zip(job.id))
            job.state, job.filename, job.sightings = "done", package.filename, package.sightings
            job.bytes = self._zip(job.id).stat().st_size
        except (InputError, LookupError, NoFont) as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - the job says it failed; the server goes on
            log.exception("export %s failed", job.id)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            partial.unlink(missing_ok=True)
        self._save(job)

    def _sweep(self) -> None:
        """Remove the packages, and the states, older than KEEP_S."""
        cutoff = time.time() - KEEP_S
        for path in self.folder.glob("*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue

    def _save(self, job: ExportJob) -> None:
        job.updated = time.time()
        tmp = self._state(job.id).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, self._state(job.id))

    def _state(self, job_id: str) -> Path:
        if not job_id.isalnum() or len(job_id) > 32:
            raise LookupError(f"no export {job_id}")
        return self.folder / f"{job_id}.json"

    def _zip(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.zip"
