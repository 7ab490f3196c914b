"""Accounts: users with roles and API tokens, and the web app's sessions.

A token is shown once, when it is made, and kept only as its hash. A web session is a random id in an
HttpOnly cookie plus a CSRF token the page echoes in a header on every change.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from indexer.accounts_store import AccountStore
from models.accounts import Role, User
from models.records import InputError

SESSION_HOURS = 12
_NAME = re.compile(r"^[\w.@-]{1,64}$")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class WebSession:
    id: str
    csrf: str
    user: User
    expires: datetime


class Accounts:
    def __init__(self, store: AccountStore):
        self.store = store

    def add(self, name: str, role: str | Role) -> tuple[User, str]:
        """A new user and its token (the only time the token is seen)."""
        if not _NAME.match(name or ""):
            raise InputError("a user name is 1–64 letters, digits or . _ @ -")
        if self.store.user_by_name(name) is not None:
            raise InputError(f"a user named {name!r} exists already")
        user = User(uuid.uuid4().hex[:12], name, role if isinstance(role, Role) else Role.named(role))
        token = _new_token()
        self.store.add_user(user, digest(token))
        return user, token

    def all(self) -> list[User]:
        return self.store.users()

    def get(self, name: str) -> User:
        user = self.store.user_by_name(name)
        if user is None:
            raise InputError(f"no user named {name!r}")
        return user

    def rotate(self, name: str) -> tuple[User, str]:
        """A new token for the user; the old one and its sessions stop working at once."""
        user = self.get(name)
        token = _new_token()
        self.store.set_token(user.id, digest(token))
        return user, token

    def disable(self, name: str, disabled: bool = True) -> User:
        user = self.get(name)
        self.store.set_disabled(user.id, disabled)
        user.disabled = disabled
        return user

    def has_admin(self) -> bool:
        return any(u.role == Role.ADMIN and not u.disabled for u in self.store.users())

    def authenticate(self, token: str) -> User | None:
        """The active user holding this token, or None."""
        if not token or len(token) > 200:
            return None
        user = self.store.user_by_token(digest(token))
        return user if user is not None and not user.disabled else None

    def open_session(self, user: User) -> WebSession:
        session = WebSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user,
                             datetime.now(timezone.utc) + timedelta(hours=SESSION_HOURS))
        self.store.add_session(digest(session.id), user.id, digest(session.csrf), session.expires)
        return session

    def session_user(self, session_id: str, csrf: str | None, needs_csrf: bool) -> User | None:
        """The user of a live session; a change (needs_csrf) must also carry the session's CSRF token."""
        if not session_id or len(session_id) > 200:
            return None
        found = self.store.session(digest(session_id))
        if found is None or found[0].disabled:
            return None
        user, csrf_hash = found
        if needs_csrf and not (csrf and hmac.compare_digest(digest(csrf), csrf_hash)):
            return None
        return user

    def close_session(self, session_id: str) -> None:
        self.store.end_session(digest(session_id))


def _new_token() -> str:
    return "sl_" + secrets.token_urlsafe(32)
