"""The contract suites' access to a real Elasticsearch cluster: named by SIGHTLINE_ES_URL (with SIGHTLINE_ES_API_KEY
or SIGHTLINE_ES_USER/PASSWORD and SIGHTLINE_ES_CA_CERTS as the deployment reads them). Without it the
Elasticsearch cases skip: nothing here imitates a cluster. Each test gets its own index prefix, dropped after it."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from indexer.es_common import drop_prefix
from services.settings import Settings
from services.system import _es

SKIP_REASON = "SIGHTLINE_ES_URL is not set: the Elasticsearch backend needs a real cluster"


@contextmanager
def on_cluster(settings: Settings) -> Iterator[Settings]:
    """These settings pointed at the cluster under a fresh index prefix (skips the test when none is named)."""
    env = Settings.from_env()
    if not env.es_url:
        pytest.skip(SKIP_REASON)
    prefix = f"sightline-test-{uuid.uuid4().hex[:12]}"
    yield replace(settings, es_url=env.es_url, es_api_key=env.es_api_key, es_user=env.es_user,
                  es_password=env.es_password, es_ca_certs=env.es_ca_certs, es_prefix=prefix)
    client = _es(replace(env, es_prefix=prefix)).client()
    try:
        drop_prefix(client, prefix)
        client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-sightings")
    finally:
        client.close()


@contextmanager
def for_backend(backend: str, settings: Settings) -> Iterator[Settings]:
    """The settings a contract suite opens `backend` with: these, or for Elasticsearch these pointed at the cluster
    under a fresh index prefix (`on_cluster`: skips without SIGHTLINE_ES_URL)."""
    if backend != "elasticsearch":
        yield settings
        return
    with on_cluster(settings) as on:
        yield on


def handles(backends: dict[str, Callable[[Settings], Any]], backend: str, tmp_path: Path) -> Iterator[Callable]:
    """For a contract suite's fixture: a function that opens `backend` on this test's data, each call another
    handle on the same data (as another process or replica would hold); every handle is closed at the end."""
    opened: list[Any] = []
    with for_backend(backend, Settings(data_dir=tmp_path, roads_geojson=None)) as settings:

        def open_one() -> Any:  # noqa: ANN401 - whichever store the backends make
            opened.append(backends[backend](settings))
            return opened[-1]

        yield open_one
        for store in opened:
            store.close()
