"""Users and web sessions in Elasticsearch: one set of accounts for every API replica on every host.

Every request is authenticated, so each look-up is a realtime get by id, never a search that could lag a refresh:
`users` (id = the user's id), `user-names` (id = the name; created only if absent, which is what makes a name one
user's), `tokens` (id = a token's sha256 → its user) and `sessions` (id = a session id's sha256 → user, CSRF hash,
expiry). A token that was replaced or a session that was ended is deleted before the call returns; a session is
also checked against its user's current token, so none outlives a rotation even if its deletion was cut short.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from indexer.accounts_store import AccountStore
from indexer.es_common import ensure_indices, small_index, walk
from indexer.es_store import from_iso, iso
from models.accounts import Role, User

KEYWORD = {"type": "keyword"}
SWEEP_EVERY_S = 600.0  # expired sessions are swept at a login at most this often (session() refuses them anyway)


def account_index_bodies(replicas: int = 1) -> dict[str, dict[str, Any]]:
    """Index suffix → settings and mappings (what is searched: names to list users, a user's sessions to end them,
    expiry to drop old sessions)."""
    return {"users": small_index({"id": KEYWORD, "name": KEYWORD}, replicas),
            "user-names": small_index({"user_id": KEYWORD}, replicas),
            "tokens": small_index({"user_id": KEYWORD}, replicas),
            "sessions": small_index({"user_id": KEYWORD, "token_hash": KEYWORD, "expires": {"type": "date_nanos"}},
                                    replicas)}


def user_doc(user: User, token_hash: str, created: datetime) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "role": int(user.role), "disabled": user.disabled,
            "created": iso(created), "token_hash": token_hash}


def user_from_doc(src: dict[str, Any]) -> User:
    return User(src["id"], src["name"], Role(src["role"]), bool(src["disabled"]), from_iso(src["created"]))


class ElasticsearchAccountStore(AccountStore):
    def __init__(self, client: Elasticsearch, prefix: str = "sightline", replicas: int = 1):
        self.client = client
        self.index = ensure_indices(client, prefix, account_index_bodies(replicas))
        self._swept = -SWEEP_EVERY_S  # monotonic time of this process's last sweep of expired sessions

    def _get(self, suffix: str, doc_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get(index=self.index[suffix], id=doc_id)["_source"]
        except NotFoundError:
            return None

    def add_user(self, user: User, token_hash: str) -> None:
        """The name first (create-only); then the token and the user, so a token never names a missing user; a
        taken-over name is checked for at the end, as `ElasticsearchCaseStore.create` does for case numbers."""
        try:
            self.client.create(index=self.index["user-names"], id=user.name, document={"user_id": user.id})
        except ConflictError:
            # a creation that died before its user was written left the name taken: take it over, conditionally
            held = self.client.get(index=self.index["user-names"], id=user.name)
            if self._get("users", held["_source"]["user_id"]) is not None:
                raise KeyError(user.name) from None
            try:
                self.client.index(index=self.index["user-names"], id=user.name, document={"user_id": user.id},
                                  if_seq_no=held["_seq_no"], if_primary_term=held["_primary_term"])
            except ConflictError:
                raise KeyError(user.name) from None
        created = user.created_at or datetime.now(timezone.utc)
        self.client.index(index=self.index["tokens"], id=token_hash, document={"user_id": user.id})
        self.client.index(index=self.index["users"], id=user.id, document=user_doc(user, token_hash, created),
                          refresh="wait_for")  # the listing shows the new user
        if self.client.get(index=self.index["user-names"], id=user.name)["_source"]["user_id"] != user.id:
            # only slow, not dead: another creation took the name over meanwhile, so this one withdraws
            self.client.delete(index=self.index["users"], id=user.id, refresh="wait_for")
            self.client.options(ignore_status=404).delete(index=self.index["tokens"], id=token_hash)
            raise KeyError(user.name)

    def users(self) -> list[User]:
        return [user_from_doc(h["_source"]) for h in walk(self.client, self.index["users"], {"match_all": {}},
                                                          [{"name": "asc"}, {"id": "asc"}])]

    def user_by_name(self, name: str) -> User | None:
        held = self._get("user-names", name)
        src = self._get("users", held["user_id"]) if held else None
        return user_from_doc(src) if src is not None and src["name"] == name else None

    def user_by_token(self, token_hash: str) -> User | None:
        held = self._get("tokens", token_hash)
        src = self._get("users", held["user_id"]) if held else None
        # the user's own record decides: a token replaced while its deletion was cut short names no one
        return user_from_doc(src) if src is not None and src["token_hash"] == token_hash else None

    def set_token(self, user_id: str, token_hash: str) -> None:
        src = self._get("users", user_id)
        if src is None:
            return
        self.client.index(index=self.index["tokens"], id=token_hash, document={"user_id": user_id})
        self.client.update(index=self.index["users"], id=user_id, doc={"token_hash": token_hash}, refresh="wait_for")
        self.client.options(ignore_status=404).delete(index=self.index["tokens"], id=src["token_hash"])
        self._end_sessions(user_id)

    def set_disabled(self, user_id: str, disabled: bool) -> None:
        try:
            self.client.update(index=self.index["users"], id=user_id, doc={"disabled": disabled}, refresh="wait_for")
        except NotFoundError:
            return
        if disabled:
            self._end_sessions(user_id)

    def _end_sessions(self, user_id: str) -> None:
        self.client.delete_by_query(index=self.index["sessions"], query={"term": {"user_id": user_id}},
                                    refresh=True, conflicts="proceed")

    def add_session(self, id_hash: str, user_id: str, csrf_hash: str, expires: datetime) -> None:
        src = self._get("users", user_id)
        if src is None:
            return
        if time.monotonic() - self._swept >= SWEEP_EVERY_S:  # not a delete-by-query per login
            self._swept = time.monotonic()
            self.client.delete_by_query(index=self.index["sessions"],
                                        query={"range": {"expires": {"lt": iso(datetime.now(timezone.utc))}}},
                                        conflicts="proceed")
        # refreshed before returning, so a later "end this user's sessions" (a search) finds it
        self.client.index(index=self.index["sessions"], id=id_hash, refresh="wait_for",
                          document={"user_id": user_id, "csrf_hash": csrf_hash, "expires": iso(expires),
                                    "token_hash": src["token_hash"]})

    def session(self, id_hash: str) -> tuple[User, str] | None:
        held = self._get("sessions", id_hash)
        if held is None or from_iso(held["expires"]) < datetime.now(timezone.utc):
            return None
        src = self._get("users", held["user_id"])
        if src is None or src["token_hash"] != held["token_hash"]:
            return None  # opened before the user's token was replaced: ended with it
        return user_from_doc(src), held["csrf_hash"]

    def end_session(self, id_hash: str) -> None:
        self.client.options(ignore_status=404).delete(index=self.index["sessions"], id=id_hash, refresh="wait_for")

    def close(self) -> None:
        self.client.close()
