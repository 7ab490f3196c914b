"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis): no input, valid or not, gets a 5xx.

The live app runs over real HTTP with the fake pipeline (no weights) and a little data (cameras, sightings, a
watchlist and a rule), and every operation is called, signed in as an admin with a case and reason, with
inputs generated from its schema: valid ones and ones that break it (wrong types, out-of-range numbers,
missing fields). A 4xx is a fine answer to a bad request; a 5xx is a bug. Deterministic (a fixed seed) and
bounded (a few examples per operation). Two operations are left out: the live alert stream never ends (a
request to it never completes; tests/test_access.py and tests/test_alerts.py cover it) and the bulk purge
(DELETE /sightings?before=...) would wipe the data the other operations are fuzzed against.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402

from services.api.app import create_app  # noqa: E402
from services.api.localserver import serving  # noqa: E402
from services.settings import Settings  # noqa: E402
from tests.conftest import CASE  # noqa: E402
from tests.fakes import FakePipeline, jpeg, vehicle  # noqa: E402

SEED = 20261102
EXAMPLES = 15  # generated per operation, after the boundary cases: well under a minute on two cores
LEFT_OUT = {("GET", "/alerts/stream"), ("DELETE", "/sightings")}


@dataclass
class Live:
    url: str
    headers: dict[str, str]
    session: object  # a requests.Session, kept open across the examples


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import requests

    tmp = tmp_path_factory.mktemp("fuzz")
    pipeline = FakePipeline()
    # the fuzzer's wrong login tokens would soon refuse every token from its address (tests/test_access.py checks
    # that limit): it is lifted here, so that every operation is answered rather than refused with 429
    app = create_app(Settings(data_dir=tmp / "data", model_dir=tmp / "no-models", roads_geojson=None,
                              max_upload_bytes=1 << 20, failed_sign_in_limit=10**6), pipeline)
    _, token = app.state.system.accounts.add("fuzzer", "admin")
    headers = {"Authorization": f"Bearer {token}", **CASE}
    with serving(app) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as api, \
            requests.Session() as session:
        cameras = [{"id": f"gate-{i}", "name": f"Gate {i}", "lon": 121.29 + i / 100, "lat": 31.21} for i in (1, 2)]
        assert api.post("/cameras", json=cameras).status_code == 201
        pipeline.script(jpeg(1), [vehicle(plate="京A12345", plate_score=0.95, vehicle_color="red")])
        for seed in (1, 2, 3):
            posted = api.post("/frames", files={"file": ("p.jpg", jpeg(seed), "image/jpeg")},
                              data={"camera_id": f"gate-{1 + seed % 2}", "captured_at": "2026-11-02T08:00:00+08:00"})
            assert posted.status_code == 201, posted.text
        watchlist = api.post("/watchlists", json={"name": "stolen", "kind": "plate", "created_by": "fuzz"}).json()
        assert api.post(f"/watchlists/{watchlist['id']}/entries", json={
            "value": "京A1*", "match": "wildcard", "reason": "fuzzing", "created_by": "fuzz"}).status_code == 201
        assert api.post("/rules", json={"name": "stolen", "watchlist_id": watchlist["id"]}).status_code == 201
        yield Live(url, headers, session)


def _openapi() -> dict:
    """The app's OpenAPI document, read from an app built in a throwaway folder (the document is the same for
    every app; the live one is fuzzed below). Read when the module is collected: the operations become tests."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "data", model_dir=Path(tmp) / "no-models",
                                  roads_geojson=None), FakePipeline())
        try:
            return app.openapi()
        finally:
            app.state.system.close()


CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none", "no-shrink": True},
    "phases": {"stateful": {"enabled": False}},
    "suppress-health-check": ["all"],
})
schema = schemathesis.openapi.from_dict(_openapi(), config=CONFIG).exclude(
    func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in LEFT_OUT)


@schema.parametrize()
def test_no_input_gets_a_server_error(case, live: Live) -> None:  # noqa: ANN001 - a schemathesis Case
    response = case.call(base_url=live.url, session=live.session, headers=live.headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error], headers=live.headers)


JSON = {"content-type": "application/json"}
EDGES = {  # inputs a schema-driven fuzzer does not make (JSON it cannot write, odd bytes, extremes of time)
    "NaN in a JSON body": ("POST", "/cameras", {"content": b'{"id":"x","name":"x","lon":NaN,"lat":1}',
                                                "headers": JSON}),
    "Infinity in a JSON body": ("POST", "/streams", {
        "content": b'{"url":"x","camera_id":"gate-1","sample_fps":Infinity}', "headers": JSON}),
    "1e400 in a JSON body": ("POST", "/search/attributes", {"content": b'{"offset":1e400}', "headers": JSON}),
    "NaN in a polygon": ("POST", "/search/areas", {"content": b'{"areas":[{"polygon":{"type":"Polygon","coordinates":'
                                                              b'[[[NaN,0],[1,0],[1,1],[NaN,0]]]}}]}', "headers": JSON}),
    "a huge offset": ("GET", "/sightings", {"params": {"offset": str(10**30)}}),
    "a huge audit offset": ("GET", "/audit", {"params": {"offset": str(10**30)}}),
    "the first instant of year 1": ("GET", "/sightings", {"params": {"start": "0001-01-01T00:00:00+14:00"}}),
    "the last instant of year 9999": ("GET", "/clones", {"params": {"end": "9999-12-31T23:59:59-14:00"}}),
    "a purge before year 1": ("DELETE", "/sightings", {"params": {"before": "0001-01-01T00:00:00+14:00"}}),
    "malformed form JSON": ("POST", "/search/image", {"files": {"file": ("q.jpg", jpeg(1), "image/jpeg")},
                                                      "data": {"filters": "[1,"}}),
    "form JSON of the wrong shape": ("POST", "/search/face", {"files": {"file": ("q.jpg", jpeg(1), "image/jpeg")},
                                                             "data": {"filters": "[1, 2]"}}),
    "bytes that are not UTF-8 in a path": ("GET", "/trajectories/%ff%fe", {}),
    "bytes that are not UTF-8 in a query": ("GET", "/search/plates?q=%ff%fe", {}),
    "a deeply nested body": ("POST", "/search/attributes", {"content": b'{"camera_ids":' + b"[" * 5000 + b"]" * 5000
                                                            + b"}", "headers": JSON}),
}


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_edge_inputs_get_no_server_error(live: Live, edge: str) -> None:
    method, path, request = EDGES[edge]
    with httpx.Client(base_url=live.url, headers=live.headers, timeout=30) as client:  # a server error closes it
        response = client.request(method, path, **{k: ({**live.headers, **v} if k == "headers" else v)
                                                   for k, v in request.items()})
    assert response.status_code < 500, (edge, response.status_code, response.text[:300])


def test_the_fuzzer_covers_every_declared_route_but_those_left_out() -> None:
    from services.api.security import ROUTES

    documented = {route for route in ROUTES if route[1] != "/"}  # `/` only redirects to the web app
    assert LEFT_OUT <= documented
    operations = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert operations == documented - LEFT_OUT
