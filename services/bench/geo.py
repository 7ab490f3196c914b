"""`sightline bench geo`: the simulated city's analytics — latencies and clone/co-travel precision and recall."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from geo import bench
from services.cameras import from_roadnet
from services.settings import ROADNET, Settings
from services.system import Sightline

BENCH_FORMAT = 1  # bump when the simulator changes, so a cached city is rebuilt


def bench_geo(n: int, cache_dir: Path | None = None, days: int = 7, seed: int = 11, roadnet: Path = ROADNET) -> dict:
    """The simulated city at n sightings. With cache_dir, the loaded city is kept there and reused by later runs
    (a 10M load takes minutes); without it, a temporary folder is used and removed."""
    folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="sightline-bench-geo-"))
    data = folder / f"geo-v{BENCH_FORMAT}-n{n}-d{days}-s{seed}"
    marker = data / "loaded.json"
    if not marker.is_file():
        shutil.rmtree(data, ignore_errors=True)  # a load that was cut short
    system = Sightline(Settings(data_dir=data))
    try:
        city = bench.city_for(from_roadnet(roadnet), n, days, seed)
        if marker.is_file():
            loaded = bench.Loaded(**json.loads(marker.read_text()))
            load_s = None
        else:
            started = time.perf_counter()
            loaded = bench.load(system.store, city, n, days)
            load_s = round(time.perf_counter() - started, 1)
            marker.write_text(json.dumps(loaded.__dict__))
        return {**bench.measure(system.store, city, loaded, seed), "load_s": load_s, "cached": load_s is None}
    finally:
        system.close()
        if cache_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
