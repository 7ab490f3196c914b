"""The `sightline` command. Bad input ends with a message and exit code 2, never a traceback."""
from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from models import registry
from models.records import InputError, parse_time
from models.registry import ModelError
from services import cameras as camera_io
from services.cli.accounts import add_account_commands, case_args, record, require_case
from services.cli.cases import add_case_commands, case_system
from services.cli.common import open_system, print_json, settings_of, time_range
from services.cli.geo import add_geo_commands
from services.cli.queue import add_queue_commands, enqueue
from services.settings import EVAL_DIR, ROADNET

if TYPE_CHECKING:
    from services.system import Sightline

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".ts", ".webm"}


def cmd_models(args: argparse.Namespace) -> int:
    model_dir = settings_of(args).model_dir
    if args.action == "pull":
        mirror = Path(args.mirror).resolve() if args.mirror else None
        if mirror is not None and not mirror.is_dir():
            raise InputError(f"mirror {mirror} is not a folder")
        files = registry.pull(model_dir, mirror)
        print(f"{len(files)} model files verified in {model_dir}")
        return 0
    if args.action == "use-heads":
        return use_heads(model_dir, args.file)
    rows = registry.status(model_dir)
    for row in rows:
        print(f"{row['state']:8} {row['file']:52} {row['licence']}")
    return 0 if all(r["state"] == "ok" for r in rows) else 1


def use_heads(model_dir: Path, file: str | None) -> int:
    """Make a head file (from `train attributes`) the active heads of its kind; the previous ones are kept beside."""
    from models.heads import HeadError, HeadSet, active_head_path

    if not file:
        raise InputError("models use-heads needs the head file (from `sightline train attributes`)")
    heads = HeadSet.load(Path(file))  # a HeadError (a ModelError) ends with its message and exit 2
    target = active_head_path(model_dir, heads.kind)
    if target.is_file():  # kept beside, by its version, to switch back to
        try:
            previous = HeadSet.load(target).version
        except HeadError:  # an unreadable active file is replaced all the same
            previous = f"{heads.kind}-heads-unreadable"
        shutil.copyfile(target, target.with_name(f"{previous}.npz"))
    registry.place(Path(file), target)
    print(f"{heads.version} is now the active {heads.kind} attribute heads (restart running servers and workers)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`train attributes`: learn a kind's heads from labelled crops, print the held-out figures, write the file."""
    from models.head_training import LabelledSet, extract, read_rows, train_heads
    from models.heads import HEADS_DIR
    from models.pipeline import Pipeline

    sets = [LabelledSet(Path(args.dir), Path(args.labels), args.group)]
    sets += [LabelledSet(Path(d), Path(f), g) for d, f, g in args.also or []]
    rows = read_rows(sets, args.kind)
    pipeline = Pipeline(settings_of(args).model_dir, faces=False, heads=False)
    embedding = pipeline.embedding_version(args.kind)

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    log(f"{len(rows.files)} labelled crops; computing their features")
    features = extract(rows, lambda crops: pipeline.crop_features(crops, args.kind),
                       cache=Path(args.cache) if args.cache else None, key=embedding)
    sources = [{"labels": str(s.labels), "grouping": s.grouping} for s in sets]
    fields = tuple(f.strip() for f in args.fields.split(",") if f.strip()) if args.fields else None
    heads, report = train_heads(rows, features, args.kind, embedding, args.licence, sources,
                                evaluate=not args.no_evaluate, fields=fields, log=log)
    heads.meta["report"] = report
    heads_dir = settings_of(args).model_dir / HEADS_DIR
    out = Path(args.out) if args.out else None
    version = heads.save(out or heads_dir / "candidate.npz")
    if out is None:  # named by its version (known once saved), beside the active heads
        out = heads_dir / f"{version}.npz"
        (heads_dir / "candidate.npz").replace(out)
    report["file"], report["version"] = str(out), version
    print_json(report)
    return 0


def cmd_cameras(args: argparse.Namespace) -> int:
    with open_system(args) as system:
        if args.action == "import":
            path = Path(args.file)
            cams = camera_io.from_roadnet(path, args.limit) if args.roadnet else camera_io.load_file(path)
            print(f"{system.store.upsert_cameras(cams)} cameras stored")
        else:
            print_json(system.store.list_cameras())
        return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from services.ingest import image_files, jobs_from_files, not_in_future, read_manifest

    paths = [Path(p) for p in args.paths]
    if any(p.suffix.lower() in VIDEO_SUFFIXES for p in paths):
        if args.queue:
            raise InputError("--queue takes photos; ingest a video without --queue")
        return _ingest_videos(args, paths)
    if args.manifest:
        if len(paths) != 1 or not paths[0].is_dir():
            raise InputError("with --manifest, give exactly one folder")
        rows = read_manifest(paths[0], Path(args.manifest))
    else:
        if not args.camera or not args.time:
            raise InputError("give --camera ID and --time ISO8601 (with a zone), "
                             "or a folder with --manifest photos.csv")
        ts = not_in_future(parse_time(args.time))
        rows = [(p, args.camera, ts) for p in image_files(paths)]
    if args.queue:  # scale-out: the frames go to the queue, and `sightline worker`s ingest them
        return enqueue(args, rows)
    with open_system(args) as system:  # rules are checked here too; webhooks go out when `serve` runs
        for camera_id in sorted({r[1] for r in rows}):
            if system.store.get_camera(camera_id) is None:
                raise InputError(f"unknown camera {camera_id!r}: import it first with `sightline cameras import`")
        report = system.ingestor.ingest(jobs_from_files(rows))
    print_json(report.summary())
    return 2 if report.errors else 0


def _ingest_videos(args: argparse.Namespace, paths: list[Path]) -> int:
    from services.video import VideoProcessor

    if not args.camera or not args.time:
        raise InputError("a video needs --camera ID and --start-time ISO8601 "
                         "(the time of its first frame, with a zone)")
    start = parse_time(args.time)
    with open_system(args) as system:
        processor = VideoProcessor(system.ingestor, sample_fps=args.sample_fps)
        reports = [processor.ingest_file(p, args.camera, start).summary() for p in paths]
    print_json(reports)
    return 0


def cmd_watchlist(args: argparse.Namespace) -> int:
    from models.watchlists import Rule
    from services.watchlists import EntrySpec, entries_from_csv, entries_to_csv

    case = require_case(args) if args.action == "export" else None  # the list leaves: say for which case
    with open_system(args) as system:
        watchlists = system.watchlists
        if args.action == "create":
            print_json(watchlists.create(args.name or "", args.kind, args.description, args.by))
            return 0
        if args.action == "list":
            print_json([{**w.__dict__, "entries": len(watchlists.entries(w.id))} for w in watchlists.all()])
            return 0
        wid = watchlists.find(args.name or "").id
        if args.action == "add":
            spec = EntrySpec(args.reason, args.by, args.value or "", args.match, args.tolerance)
            print_json(watchlists.add_entries(wid, [spec]))
        elif args.action == "import":
            made = watchlists.add_entries(wid, entries_from_csv(_read_text(args.value)))
            print(f"{len(made)} entries imported")
        elif args.action == "export":
            exported = watchlists.entries(wid)
            record(system, "watchlist export", {"watchlist": wid}, case, len(exported))
            print(entries_to_csv(exported), end="")
        elif args.action == "enrol":
            photos = [_read_bytes(p) for p in [args.value, *args.more]]
            print_json(watchlists.enrol_face(wid, photos, args.label, args.reason, args.by))
        elif args.action == "rule":
            rule = Rule(uuid.uuid4().hex[:12], args.rule_name or f"{args.name} ({args.kind_of_rule})",
                        kind=args.kind_of_rule, watchlist_id=wid, camera_ids=args.camera or [],
                        severity=args.severity, min_confidence=args.min_confidence)
            print_json(watchlists.put_rule(rule))
        return 0


def _read_bytes(path: str | None) -> bytes:
    if not path or not Path(path).is_file():
        raise InputError(f"{path or 'a file'} does not exist")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _read_text(path: str | None) -> str:
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None


def cmd_alerts(args: argparse.Namespace) -> int:
    from services.delivery import alert_json

    with open_system(args) as system:
        print_json([alert_json(a) for a in system.alert_store.alerts(acked=False if args.open else None,
                                                                    limit=args.limit)])
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from services.search import Filters

    require_case(args)  # before the data folder is opened
    start, end = time_range(args)
    filters = Filters(start=start, end=end, camera_ids=args.camera)
    params: dict[str, object] = {"what": args.what, "query": args.query, "mode": args.mode, "camera": args.camera,
                                 "start": args.start, "end": args.end}
    with case_system(args) as (system, case):
        if args.what == "text":
            print_json(_search_text(system, args, case, params))
            return 0
        if args.what == "plate":
            plates = system.search.plates_like(args.query, args.mode, filters, args.limit)
            record(system, "search plate", params, case, len(plates))
            print_json(plates)
            return 0
        data = Path(args.query).read_bytes() if Path(args.query).is_file() else None
        if data is None:
            raise InputError(f"{args.query} is not a photo file")
        found = (system.search.image(data, args.kind, args.limit, filters, args.pick) if args.what == "image"
                 else system.search.face(data, args.limit, filters))
        record(system, f"search {args.what}", params, case, len(found.results))
        print_json(found)
        return 0


def _search_text(system: Sightline, args: argparse.Namespace, case: tuple[str, str],
                 params: dict[str, object]) -> dict[str, object]:
    """A free-text query: parsed into filters (shown with the results), then run as a plate or attribute search."""
    from services.freetext import parse, zone
    from services.vocabulary import color_scope

    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:  # NaN fails too
        raise InputError(f"--min-confidence is between 0 and 1, not {args.min_confidence}")
    parsed = parse(args.query, datetime.now(zone(args.tz)), system.store.list_cameras())
    parsed.attributes = color_scope(parsed.attributes, args.near_colors, args.exact_colors)
    parsed.attributes.min_confidence = args.min_confidence
    filters = parsed.filters()
    if args.camera:
        filters.camera_ids = [c for c in filters.camera_ids or args.camera if c in args.camera]
    results: list[object]
    if parsed.plate and parsed.plate_mode:
        results = list(system.search.plates_like(parsed.plate, parsed.plate_mode, filters, args.limit))
    else:
        results = list(system.search.attributes(parsed.kind or "vehicle", filters, args.limit, 0, True))
    record(system, "search text", {**params, "tz": args.tz}, case, len(results))
    return {"parsed": parsed.to_json(), "results": results}


def cmd_purge(args: argparse.Namespace) -> int:
    chosen = sum(x is not None for x in (args.before, args.older_than_days, args.id))
    if chosen > 1 or (chosen == 0 and not args.sweep):
        raise InputError("give one of --before, --older-than-days or --id (and --sweep to remove orphans too)")
    if args.camera and not chosen:
        raise InputError("--camera goes with --before or --older-than-days (a sweep is over all cameras)")
    before = parse_time(args.before) if args.before else None
    if args.older_than_days is not None:
        days = args.older_than_days
        if not math.isfinite(days) or days < 0:
            raise InputError(f"--older-than-days must be a number of days, zero or more, not {days}")
        try:
            before = datetime.now(timezone.utc) - timedelta(days=days)
        except OverflowError:
            raise InputError(f"--older-than-days {days:g} reaches back past the year 1") from None
    with open_system(args) as system:
        done = system.retention.purge(before=before, camera_ids=args.camera, ids=args.id) if chosen else None
        swept = system.retention.sweep_orphans() if args.sweep else None
        record(system, "purge", {"before": before, "camera": args.camera, "id": args.id, "sweep": args.sweep}, None,
               done.sightings if done else 0)
        print_json({"purged": done, "swept": swept} if args.sweep else done)
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    """After a space's model changed: the stored sightings it made vectors for get today's, from their crops."""
    with open_system(args) as system:
        report = system.ingestor.reembed(args.space, args.batch)
        record(system, "reembed", {"space": args.space}, None, report.replaced)
        print_json(report)
    return 0


def cmd_reattribute(args: argparse.Namespace) -> int:
    """After the attribute heads changed: stored sightings get today's colours, types and clothing from their crops."""
    with open_system(args) as system:
        report = system.ingestor.reattribute(args.kind, args.batch)
        record(system, "reattribute", {"kind": args.kind, "heads": report.heads}, None, report.replaced)
        print_json(report)
    return 0


def cmd_sightings(args: argparse.Namespace) -> int:
    from indexer.store import SightingQuery

    with case_system(args) as (system, case):
        found = system.store.query(SightingQuery(kind=args.kind, plate=args.plate, limit=args.limit,
                                                 camera_ids=[args.camera] if args.camera else None))
        record(system, "sightings", {"kind": args.kind, "plate": args.plate, "camera": args.camera}, case, len(found))
        print_json([s.to_json() for s in found])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.api.app import create_app

    settings = settings_of(args)
    if not _loopback(args.host):
        with open_system(args) as system:
            if not system.accounts.has_admin():
                raise InputError(f"refusing to listen on {args.host} while no admin exists: create one first with "
                                 "`sightline users add NAME --role admin` (or serve on 127.0.0.1)")
    uvicorn.run(create_app(settings), host=args.host, port=args.port)
    return 0


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_demo(args: argparse.Namespace) -> int:
    """Cameras on real Shanghai intersections; the eval photos ingested as if those cameras took them."""
    from services.ingest import image_files, jobs_from_files

    eval_dir = Path(args.eval_dir)
    if not eval_dir.is_dir():
        raise InputError(f"{eval_dir} is not a folder (the shared eval data)")
    with open_system(args) as system:
        cams = camera_io.from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson", limit=40)
        system.store.upsert_cameras(cams)
        photos = (image_files([eval_dir / "plates" / "full"]) + image_files([eval_dir / "scenes"])
                  + image_files([eval_dir / "faces" / "barack_obama"]))
        start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
        rows = [(p, cams[i % len(cams)].id, start + timedelta(minutes=3 * i)) for i, p in enumerate(photos)]
        t0 = time.perf_counter()
        report = system.ingestor.ingest(jobs_from_files(rows))
        elapsed = time.perf_counter() - t0
        plates = sorted({p for r in report.results for s in r.sightings if (p := getattr(s.attributes, "plate", None))})
        print_json({**report.summary().__dict__, "seconds": round(elapsed, 1), "plates_read": plates,
                    "data_dir": str(system.settings.data_dir)})
    data = system.settings.data_dir
    print(f"\nDemo data is in {data}. Make yourself a user (it prints your token once), then start the API:\n"
          f"  .venv/bin/sightline --data {data} users add you --role admin\n"
          f"  .venv/bin/sightline --data {data} serve --port 8000   # then sign in at http://127.0.0.1:8000/")
    return 2 if report.errors else 0


def cmd_eval(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a folder")
    model_dir = settings_of(args).model_dir
    if args.what == "plates":
        from models.plates import PlateReader
        from services.bench.eval_plates import evaluate_plates

        result = evaluate_plates(directory, PlateReader(model_dir))
    elif args.what == "faces":
        from models.detectors import FaceDetector
        from models.embedders import FaceEmbedder
        from services.bench.evaluation import evaluate_faces

        result = evaluate_faces(directory, FaceDetector(registry.model_path("yunet_s_dynamic.onnx", model_dir)),
                                FaceEmbedder())
    elif args.what == "attributes":
        from models.heads import HeadSet
        from models.pipeline import Pipeline
        from services.bench.eval_attributes import evaluate_attributes

        labels = Path(args.labels) if args.labels else directory / "attributes" / f"{args.kind}_attributes.tsv"
        pipeline = Pipeline(model_dir, faces=False, heads=not (args.rules or args.heads))
        if args.heads:
            pipeline.heads[args.kind] = pipeline.checked_heads(HeadSet.load(Path(args.heads)), args.kind)
        result = evaluate_attributes(directory, labels, args.kind, pipeline)
    else:
        from models.embedders import person_embedder, vehicle_embedder
        from models.rerank import Verifier
        from services.bench.evaluation import evaluate_reid

        embedder = vehicle_embedder(model_dir) if args.kind == "vehicle" else person_embedder(model_dir)
        result = evaluate_reid(directory, embedder, Verifier() if args.rerank else None)
    print_json(result)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from services.bench.pipeline import bench_ingest, bench_video

    work = Path(tempfile.mkdtemp(prefix="sightline-bench-"))
    # the data folder inside the work folder, so that the audit key and checkpoint beside it go with it
    settings = replace(settings_of(args), data_dir=work / "data")
    try:
        if args.what == "ingest":
            print_json(bench_ingest(Path(args.path), settings, ROADNET, args.repeat))
        elif args.what == "video":
            print_json(bench_video(Path(args.path), settings, args.sample_fps))
        elif args.what == "geo":
            from services.bench.geo import bench_geo

            print_json(bench_geo(args.sightings, Path(args.cache) if args.cache else None))
        elif args.what == "search":
            from services.bench.search import bench_search

            print_json(bench_search(args.vectors, args.dim, Path(args.real) if args.real else None,
                                distribution=args.distribution, kind=args.index))
        elif args.what == "workers":
            from services.bench.workers import bench_workers

            print_json(bench_workers(Path(args.path), settings, args.workers, args.queue, ROADNET, args.repeat))
        elif args.what == "plates":
            from services.bench.search import bench_plates

            print_json(bench_plates(args.sightings))
        elif args.what == "photo-search":
            from services.bench.photo_search import bench_photo_search

            reid = Path(args.eval) if args.eval else EVAL_DIR / "reid" / "vehicle"
            print_json(bench_photo_search(settings, EVAL_DIR, reid, args.sightings, distractors=args.distractors))
        elif args.what == "web":
            from services.bench.web import bench_web

            print_json(bench_web(settings, args.cameras, args.points))
        else:
            from services.bench.alerts import bench_alerts

            photos = Path(args.path) if args.path else None
            print_json(bench_alerts(settings, args.rules, args.entries, args.faces, args.sightings, photos))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sightline", description=__doc__)
    p.add_argument("--data", help="data directory (default $SIGHTLINE_DATA or ./data)")
    p.add_argument("--models", help="model directory (default $SIGHTLINE_MODEL_DIR or ./model_store)")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="pull and list model weights")
    m.add_argument("action", choices=["pull", "list", "use-heads"])
    m.add_argument("file", nargs="?", help="use-heads: a head file from `sightline train attributes`")
    m.add_argument("--mirror", help="a folder holding the model files (air-gapped sites)")
    m.set_defaults(func=cmd_models)

    c = sub.add_parser("cameras", help="import or list cameras")
    c.add_argument("action", choices=["import", "list"])
    c.add_argument("file", nargs="?", help=".csv or .geojson")
    c.add_argument("--roadnet", action="store_true", help="the file is an OSM intersections GeoJSON (one camera each)")
    c.add_argument("--limit", type=int)
    c.set_defaults(func=cmd_cameras)

    i = sub.add_parser("ingest", help="ingest photos")
    i.add_argument("paths", nargs="+")
    i.add_argument("--camera")
    i.add_argument("--time", "--start-time", dest="time",
                   help="capture time (a video: its first frame), ISO 8601 with a zone")
    i.add_argument("--sample-fps", type=float, default=5.0, help="video: frames per second to analyse")
    i.add_argument("--manifest", help="CSV with file, camera_id, captured_at")
    i.add_argument("--queue", help="redis://HOST:PORT/DB: queue the photos for `sightline worker`s instead")
    i.set_defaults(func=cmd_ingest)

    s = sub.add_parser("sightings", help="list stored sightings")
    s.add_argument("--kind", choices=["vehicle", "person", "face"])
    s.add_argument("--plate")
    s.add_argument("--camera")
    s.add_argument("--limit", type=int, default=20)
    case_args(s)
    s.set_defaults(func=cmd_sightings)

    r = sub.add_parser("purge", help="delete sightings (retention) with their vectors, crops and frames")
    r.add_argument("--before", help="ISO 8601 with a zone: delete what was taken before")
    r.add_argument("--older-than-days", type=float, help="delete what is older than this many days")
    r.add_argument("--id", action="append", help="delete this sighting (repeatable)")
    r.add_argument("--camera", action="append", help="only at these cameras (repeatable; with a time)")
    r.add_argument("--sweep", action="store_true",
                   help="also remove orphans: crop files no sighting refers to, alerts naming sightings that are gone")
    r.set_defaults(func=cmd_purge)

    e = sub.add_parser("reembed", help="after an embedding model or the local features changed: give stored "
                                       "sightings today's, from their crops")
    e.add_argument("--space", choices=["vehicle", "person"], default="vehicle")
    e.add_argument("--batch", type=int, default=64, help="crops embedded (and committed) at a time")
    e.set_defaults(func=cmd_reembed)

    a = sub.add_parser("reattribute", help="after the attribute heads changed: give stored sightings today's "
                                           "attributes, from their crops")
    a.add_argument("--kind", choices=["vehicle", "person"], default="vehicle")
    a.add_argument("--batch", type=int, default=256, help="crops described (and committed) at a time")
    a.set_defaults(func=cmd_reattribute)

    v = sub.add_parser("serve", help="run the HTTP API")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="cameras on Shanghai intersections + the eval photos ingested")
    d.add_argument("--eval-dir", default=str(EVAL_DIR))
    d.set_defaults(func=cmd_demo)

    w = sub.add_parser("watchlist", help="watchlists of plates, faces and attributes, and their rules")
    w.add_argument("action", choices=["create", "list", "add", "import", "export", "enrol", "rule"])
    w.add_argument("name", nargs="?", help="the watchlist's name (or id)")
    w.add_argument("value", nargs="?", help="add: plate pattern; import: CSV file; enrol: a photo")
    w.add_argument("more", nargs="*", help="enrol: more photos of the same person")
    w.add_argument("--kind", choices=["plate", "face", "attribute"], default="plate")
    w.add_argument("--match", choices=["exact", "wildcard", "fuzzy"], default="exact")
    w.add_argument("--tolerance", type=int, default=1)
    w.add_argument("--reason", default="", help="add: why it is on the list; export: why it is exported")
    w.add_argument("--case", help="export: the case it serves")
    w.add_argument("--by", default="", help="who adds it")
    w.add_argument("--description", default="")
    w.add_argument("--label", default="", help="enrol: the person's name or reference")
    w.add_argument("--rule-name")
    w.add_argument("--rule-kind", dest="kind_of_rule", choices=["watchlist", "not_on_whitelist"], default="watchlist")
    w.add_argument("--camera", action="append", help="rule: only these cameras (repeatable)")
    w.add_argument("--severity", choices=["low", "medium", "high", "critical"], default="medium")
    w.add_argument("--min-confidence", type=float, default=0.0)
    w.set_defaults(func=cmd_watchlist)

    a = sub.add_parser("alerts", help="list alerts")
    a.add_argument("--open", action="store_true", help="only alerts not acknowledged")
    a.add_argument("--limit", type=int, default=50)
    a.set_defaults(func=cmd_alerts)

    q = sub.add_parser("search", help="search by plate, photo or face")
    q.add_argument("what", choices=["plate", "image", "face", "text"])
    q.add_argument("query", help="plate: a plate or pattern; image/face: a photo file; text: what you would say, "
                                 "e.g. '白色SUV 皖A 昨天8点到10点' or 'man in black with a backpack'")
    q.add_argument("--tz", default="UTC", help="text: the IANA zone its times are meant in (Asia/Shanghai)")
    q.add_argument("--near-colors", action="store_true", help="text: a colour also matches all its near colours")
    q.add_argument("--exact-colors", action="store_true",
                   help="text: a colour matches only itself (by default white, silver and gray match each other)")
    q.add_argument("--min-confidence", type=float, help="text: only attributes classified at least this sure")
    q.add_argument("--mode", choices=["exact", "wildcard", "fuzzy", "suffix"], default="exact")
    q.add_argument("--kind", choices=["vehicle", "person"], default="vehicle")
    q.add_argument("--pick", type=int, help="image: which detected object (0 = the largest)")
    q.add_argument("--camera", action="append")
    q.add_argument("--start")
    q.add_argument("--end")
    q.add_argument("--limit", type=int, default=20)
    case_args(q)
    q.set_defaults(func=cmd_search)

    add_geo_commands(sub)
    add_account_commands(sub)
    add_case_commands(sub)
    add_queue_commands(sub)

    e = sub.add_parser("eval", help="measure accuracy on labelled data")
    e.add_argument("what", choices=["plates", "faces", "reid", "attributes"])
    e.add_argument("dir", help="attributes: the eval folder the label file's paths are relative to")
    e.add_argument("--labels", help="attributes: the label TSV (default DIR/attributes/KIND_attributes.tsv)")
    e.add_argument("--kind", choices=["vehicle", "person"], default="vehicle")
    e.add_argument("--rerank", action="store_true", help="reid: verify the leading candidates by local features")
    e.add_argument("--heads", help="attributes: measure this head file (from `train attributes`) instead of the active")
    e.add_argument("--rules", action="store_true", help="attributes: measure the rules alone, without learned heads")
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("train", help="learn attribute heads from labelled crops (prints held-out figures)")
    t.add_argument("what", choices=["attributes"])
    t.add_argument("dir", help="the folder the label file's paths are relative to")
    t.add_argument("--labels", required=True, help="TSV in the `eval attributes` columns (file, color, type, ...)")
    t.add_argument("--kind", choices=["vehicle", "person"], required=True)
    t.add_argument("--group", choices=["folder", "prefix"], default="folder",
                   help="what a held-out group is: the file's folder (an identity, a source) or its name's prefix "
                        "before the first _ (a video, a camera)")
    t.add_argument("--also", nargs=3, action="append", metavar=("DIR", "LABELS", "GROUP"),
                   help="another labelled set trained on together (repeatable)")
    t.add_argument("--licence", default="trained on the deployment's own labelled crops",
                   help="the training data's terms, kept in the head file and shown by `models list`")
    t.add_argument("--out", help="the head file (default: MODELS/heads/<version>.npz, not yet active: "
                                 "compare with `eval attributes --heads`, then `models use-heads`)")
    t.add_argument("--fields", help="only these fields, comma-separated (vehicle: color,type; person: gender,"
                                    "upper_color,lower_color,bag,backpack,hat,long_sleeves,long_pants); the rules "
                                    "answer the others")
    t.add_argument("--cache", help="keep the computed features here and reuse them")
    t.add_argument("--no-evaluate", action="store_true", help="skip the held-out measurement (faster)")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="benchmarks (print JSON)")
    b.add_argument("what", choices=["ingest", "video", "alerts", "web", "geo", "search", "plates", "workers",
                                    "photo-search"])
    b.add_argument("--workers", default="1,2", help="workers: the worker counts to measure, e.g. 1,2,4")
    b.add_argument("--queue", help="workers: redis://HOST:PORT/DB (default: a redis-server of its own)")
    b.add_argument("--repeat", type=int, default=3, help="ingest, workers: each photo this many times (made unique)")
    b.add_argument("--vectors", type=int, default=100_000, help="search: vectors in the index")
    b.add_argument("--dim", type=int, default=1024, help="search: their dimension")
    b.add_argument("--real", help="search: a folder of photos whose real embeddings join the random ones")
    b.add_argument("--distribution", choices=["clustered", "uniform"], default="clustered",
                   help="search: vectors shaped like a sighting store (groups, objects, sightings), "
                        "or i.i.d. on the sphere")
    b.add_argument("--index", choices=["hnsw", "ivfpq"], default="ivfpq",
                   help="search: the approximate index to measure (a graph up to SIGHTLINE_GRAPH_LIMIT, then a "
                        "compressed IVF re-ranked on the stored floats)")
    b.add_argument("path", nargs="?", help="ingest: a folder of photos; video: a video file; alerts: optional photos")
    b.add_argument("--sample-fps", type=float, default=5.0)
    b.add_argument("--rules", type=int, default=100)
    b.add_argument("--entries", type=int, default=10_000)
    b.add_argument("--faces", type=int, default=1_000)
    b.add_argument("--sightings", type=int, default=4_000,
                   help="alerts: synthetic sightings per run; geo: in the simulated city; plates: in the store")
    b.add_argument("--cameras", type=int, default=1_000, help="web: cameras on the map")
    b.add_argument("--points", type=int, default=500, help="web: points in the drawn trajectory")
    b.add_argument("--cache", help="geo: keep the loaded city in this folder and reuse it (a 10M load takes minutes)")
    b.add_argument("--distractors", choices=["synthetic", "real"], default="synthetic",
                   help="photo-search: synthetic sightings fitted to the embedding, or the real vehicle crops of "
                        "eval/traffic_cctv (at most their number)")
    b.add_argument("--eval", help="photo-search: a DIR/<vehicle>/<camera>_<n>.jpg folder (default: the shared "
                                  "eval/reid/vehicle); cam1 is stored, the other cameras' photos are the queries")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the command (not called in-process): `sightline ... | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    if args.command == "cameras" and args.action == "import" and not args.file:
        print("sightline: cameras import needs a FILE", file=sys.stderr)
        return 2
    if args.command == "bench" and args.what in ("ingest", "video", "workers") and not args.path:
        print(f"sightline: bench {args.what} needs a PATH", file=sys.stderr)
        return 2
    try:
        check_numbers(args)
        return int(args.func(args))
    except (InputError, ModelError) as exc:
        print(f"sightline: {exc}", file=sys.stderr)
        return 2


MAX_LIMIT = 1_000_000  # --limit: past any page a terminal can show; SQLite's LIMIT overflows at 2^63
MAX_INT = 1_000_000_000  # any other whole-number option (ports, counts, sizes)


def check_numbers(args: argparse.Namespace) -> None:
    """Every number on the command line in range before anything runs: a --limit from 1 to MAX_LIMIT
    (SQLite reads -1 as "no limit"), other whole numbers within ±MAX_INT, and no NaN or infinity."""
    for name, value in sorted(vars(args).items()):
        option = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{option} must be a finite number, not {value}")
        if name == "limit" and not 1 <= value <= MAX_LIMIT:
            raise InputError(f"--limit must be between 1 and {MAX_LIMIT}, not {value}")
        if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
            raise InputError(f"{option} is out of range: {value}")


if __name__ == "__main__":
    sys.exit(main())
