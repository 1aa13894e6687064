"""Bearer-token authentication from a kube-apiserver style token file (`--token-auth-file`):
CSV lines `token,user,uid,"group1,group2"`."""
from __future__ import annotations

import csv
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = field(default_factory=tuple)
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def info(self) -> dict:
        out = {"username": self.name, "uid": self.uid, "groups": list(self.groups)}
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra}
        return out


class TokenFile:
    def __init__(self, path: str):
        self.path = path
        self._mtime = -1.0
        self._checked = 0.0
        self._tokens: dict[str, User] = {}
        self.reload()

    def reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            self._tokens = {}
            return
        if mtime == self._mtime:
            return
        tokens: dict[str, User] = {}
        with open(self.path, newline="") as f:
            for row in csv.reader(f):
                if len(row) < 2 or row[0].startswith("#"):
                    continue
                groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
                tokens[row[0]] = User(row[1], row[2] if len(row) > 2 else "", groups + ("system:authenticated",))
        self._tokens = tokens
        self._mtime = mtime

    def authenticate(self, header: str | None) -> User | None:
        """The user an `Authorization: Bearer <token>` header names (the scheme in any case, as upstream), or
        None: no header, another scheme, an empty or unknown token, or one of bytes no token has."""
        parts = (header or "").split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer":
            return None
        token = parts[1].strip()
        if not token or not token.isascii():
            return None
        now = time.monotonic()
        if now - self._checked > 1.0:   # the file is re-read when it changes, looked at once a second
            self._checked = now
            self.reload()
        user = self._find(token)
        if user is None and now != self._checked:   # an unknown token may have just been added
            self._checked = now
            self.reload()
            user = self._find(token)
        return user

    def _find(self, token: str) -> User | None:
        for t, user in self._tokens.items():
            if hmac.compare_digest(t, token):
                return user
        return None

    def add(self, user: str, groups: list[str], uid: str | None = None) -> str:
        token = secrets.token_urlsafe(32)
        new = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", newline="") as f:
            if new:
                f.write("# token,user,uid,groups\n")
            csv.writer(f).writerow([token, user, uid or user, ",".join(groups)])
        self.reload()
        return token
