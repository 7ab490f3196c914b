"""A node for the Elasticsearch client that records every request instead of sending it, and answers as a
cluster would in the simplest case (or as a test says): the unit tests of the Elasticsearch backends check what
is sent and how answers are read without a cluster, never calling it one."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
from elastic_transport._node._base import NodeApiResponse
from elasticsearch import Elasticsearch

Answer = Callable[[str, str, Any], "tuple[int, Any] | None"]


class Recorder(BaseNode):
    """Records every request and acknowledges it: bulk items succeed, searches find nothing, HEAD finds no index.

    `answer(method, path, body)` may answer a request instead (status, body), or raise as the network would (a
    timeout); None leaves it to the defaults above."""

    requests: ClassVar[list[tuple[str, str, Any]]] = []
    count: ClassVar[int] = 0
    indices: ClassVar[dict[str, Any]] = {}  # what GET <pattern> lists
    hits: ClassVar[list[dict[str, Any]]] = []  # what a search finds (one page, cut to the request's size)
    answer: ClassVar[Answer | None] = None

    def perform_request(self, method: str, target: str, body: bytes | None = None, headers: Any = None,
                        request_timeout: Any = None) -> NodeApiResponse:
        text = body.decode() if body else ""
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        parsed = lines[0] if len(lines) == 1 and "_bulk" not in target and "_msearch" not in target else lines
        Recorder.requests.append((method, target, parsed))
        path = target.split("?")[0]
        status, answer = 200, {"acknowledged": True}
        given = Recorder.answer(method, path, parsed) if Recorder.answer is not None else None
        if given is not None:
            status, answer = given
        elif method == "HEAD":
            status, answer = 404, {}
        elif method == "GET" and "*" in path:
            answer = Recorder.indices
        elif path.endswith("/_bulk"):
            items = [{op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 201}}
                     for entry in lines if len(entry) == 1 and (op := next(iter(entry))) in
                     ("index", "create", "update", "delete") and isinstance(meta := entry[op], dict)]
            answer = {"errors": False, "items": items}
        elif path.endswith("/_msearch"):
            answer = {"responses": [{"hits": {"hits": []}} for _ in lines[::2]]}
        elif path.endswith("/_count"):
            answer = {"count": Recorder.count}
        elif path.endswith("/_search"):
            size = parsed.get("size", 10) if isinstance(parsed, dict) else 10
            answer = {"hits": {"hits": Recorder.hits[:size]}, "aggregations": {"top": {"value": None}}}
        elif path.endswith("/_delete_by_query"):
            answer = {"deleted": 0}
        elif "/_update/" in path:
            answer = {"result": "created"}  # a sequence's first numbers
        elif path.endswith("/_mget"):
            answer = {"docs": [{"_id": i, "found": False} for i in parsed.get("ids", [])]}
        meta = ApiResponseMeta(status, "1.1", HttpHeaders({"x-elastic-product": "Elasticsearch",
                                                           "content-type": "application/json"}), 0.0, self.config)
        return NodeApiResponse(meta, json.dumps(answer).encode())


@pytest.fixture
def recorded() -> Iterator[Elasticsearch]:
    Recorder.requests, Recorder.count, Recorder.indices, Recorder.hits, Recorder.answer = [], 0, {}, [], None
    client = Elasticsearch("http://recorder:9200", node_class=Recorder)
    yield client
    client.close()


def sent(method: str, path_part: str) -> list[tuple[str, str, Any]]:
    return [r for r in Recorder.requests if r[0] == method and path_part in r[1]]
