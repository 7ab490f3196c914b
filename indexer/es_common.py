"""What the Elasticsearch backends share: the client, bulk writes with retries, deep reads, index creation.

Request bodies are built by pure functions in es_store / es_vectors so that unit tests check what is sent
without a cluster; this module holds the few calls that talk to one.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, BadRequestError, Elasticsearch, helpers

from models.records import InputError

# streaming_bulk retries a chunk's documents answered 429 (the cluster's write queue full) with exponential
# back-off: 1 s, 2 s, 4 s, ... up to 60 s, five times, before it gives up with an error.
BULK_OPTIONS: dict[str, Any] = {"chunk_size": 500, "max_chunk_bytes": 50 << 20, "max_retries": 5,
                                "initial_backoff": 1.0, "max_backoff": 60.0, "raise_on_error": True,
                                "raise_on_exception": True, "yield_ok": False}
PAGE = 1_000  # documents per request when walking an index with search_after
MAX_TERMS = 65_536  # Elasticsearch's default index.max_terms_count: the most values a terms query may carry


@dataclass(frozen=True)
class ESConnection:
    """Where the cluster is and how to sign in: an API key, or a user and password; a CA file for TLS."""

    url: str
    api_key: str | None = None
    user: str | None = None
    password: str | None = None
    ca_certs: str | None = None

    def client(self) -> Elasticsearch:
        return Elasticsearch(self.url, **self.client_options())

    def client_options(self) -> dict[str, Any]:
        # Transport-level retries cover a node that restarts or times out, for the requests that may be sent
        # twice; the others go through once(). Bulk retries of rejected documents (429) are BULK_OPTIONS.
        kwargs: dict[str, Any] = {"request_timeout": 30, "retry_on_timeout": True, "max_retries": 3}
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.password:
            kwargs["basic_auth"] = (self.user or "elastic", self.password)
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        return kwargs


def once(client: Elasticsearch) -> Elasticsearch:
    """The client for a request that must not be applied twice: a scripted increment, numbers taken from a
    sequence, a bulk that carries such updates. The transport resends a request that timed out (or met a 502,
    503 or 504), which the cluster may already have applied; these are sent once, and a caller that meets an
    unknown outcome repairs by recounting (ElasticsearchStore._undo), never by replaying."""
    return client.options(max_retries=0, retry_on_timeout=False)


def bulk(client: Elasticsearch, actions: Iterable[dict[str, Any]], refresh: bool | str = False,
         ignore_status: Sequence[int] = ()) -> None:
    """Send actions in chunks, retrying rejected ones with back-off; any other failure raises BulkIndexError.

    `refresh="wait_for"` returns once the writes are visible to search (the commit path); bulk loads pass
    False and refresh once at the end, which costs the cluster far less than a refresh per chunk.
    """
    for _ in helpers.streaming_bulk(client, actions, refresh=refresh, ignore_status=tuple(ignore_status),
                                    **BULK_OPTIONS):
        pass  # yield_ok=False: only failures would come out, and raise_on_error raises them instead


def walk(client: Elasticsearch, index: str, query: dict[str, Any], sort: list[Any], source: Any = True,
         page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every hit of a query in sort order, a page at a time with search_after (from/size stops at 10,000).

    The sort must end in a unique field so that search_after never skips or repeats a hit.
    """
    after: list[Any] | None = None
    while True:
        hits = client.search(index=index, query=query, sort=sort, size=page, source=source, search_after=after,
                             ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"]
        yield from hits
        if len(hits) < page:
            return
        after = hits[-1]["sort"]


def ensure_index(client: Elasticsearch, name: str, body: dict[str, Any]) -> bool:
    """Create an index with its settings and mappings unless it exists (several processes may race here);
    True when this call created it.

    Only "already exists" is another process having been first; any other refusal (a mapping this cluster's
    version does not know, a bad setting) is raised as IndexRefused: left silent, later writes would create the
    index with a mapping guessed from the first document, or reads would fail with 404."""
    if client.indices.exists(index=name):
        return False
    try:
        client.indices.create(index=name, **body)
        return True
    except BadRequestError as exc:
        kind, reason = error_of(exc)
        if kind != "resource_already_exists_exception":
            raise IndexRefused(f"Elasticsearch refused to create the index {name}: {reason}") from exc
        return False


class IndexRefused(InputError):
    """The cluster would not create an index as Sightline defines it: the operator's cluster (its version, its
    settings) does not fit the configuration, which the CLI reports as such (exit 2)."""


def error_of(exc: ApiError) -> tuple[str, str]:
    """(type, reason) of the cluster's error answer, e.g. ("mapper_parsing_exception", "Unknown ...")."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    if isinstance(error, dict):
        return str(error.get("type", "")), str(error.get("reason") or error.get("type", ""))
    return "", str(error or exc)


def small_index(properties: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The create body of an index of few documents: one shard; only `properties` are indexed, the rest of a
    document stays in _source (dynamic false: no mapping grows from what is written)."""
    return {"settings": {"number_of_shards": 1, "number_of_replicas": replicas},
            "mappings": {"dynamic": False, "properties": properties}}


def ensure_indices(client: Elasticsearch, prefix: str, bodies: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`ensure_index` for each `<prefix>-<suffix>` of `bodies` (suffix → create body); returns suffix → name."""
    names = {suffix: f"{prefix}-{suffix}" for suffix in bodies}
    for suffix, body in bodies.items():
        ensure_index(client, names[suffix], body)
    return names


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def written_ok(client: Elasticsearch, actions: Iterable[dict[str, Any]], written: list[tuple[str, str, str]],
               refresh: bool | str = False) -> None:
    """Like bulk(), and records (operation, index, id) of every action that succeeded in `written` as it goes, so
    that a caller can undo exactly its own writes when another action of the request failed (and never touch a
    document it did not write)."""
    options = {**BULK_OPTIONS, "raise_on_error": False, "yield_ok": True}
    failed: list[dict[str, Any]] = []
    for ok, item in helpers.streaming_bulk(client, actions, refresh=refresh, **options):
        op, result = next(iter(item.items()))
        if ok:
            written.append((op, result["_index"], result["_id"]))
        else:
            failed.append(item)
    if failed:
        raise helpers.BulkIndexError(f"{len(failed)} document(s) failed to index", failed)


def conflicts(client: Elasticsearch, actions: Iterable[dict[str, Any]]) -> list[str]:
    """Send conditional actions (if_seq_no); returns the ids refused because the document changed since it was
    read (409), for the caller to read and try again. A document gone meanwhile (404) is not retried; any other
    failure raises BulkIndexError."""
    options = {**BULK_OPTIONS, "raise_on_error": False}
    refused, failed = [], []
    for ok, item in helpers.streaming_bulk(client, actions, refresh="wait_for", **options):
        if ok:
            continue
        result = next(iter(item.values()))
        if result.get("status") == 409:
            refused.append(str(result["_id"]))
        elif result.get("status") != 404:
            failed.append(item)
    if failed:
        raise helpers.BulkIndexError(f"{len(failed)} document(s) failed to update", failed)
    return refused


def drop_prefix(client: Elasticsearch, prefix: str) -> None:
    """Delete every index whose name starts with `<prefix>-`, listing them first and deleting them by name."""
    names = sorted(client.indices.get(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True,
                                      expand_wildcards="all"))
    for part in chunks(names, 50):
        client.options(ignore_status=404).indices.delete(index=",".join(part))
