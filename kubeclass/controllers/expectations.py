"""Controller expectations (client-go controller_utils.go): a controller that asked for N creates and M
deletes does not act on its key again until its informer has seen them (or 5 minutes passed), so a stale
cache never makes it create or delete twice."""
from __future__ import annotations

import time

TTL = 300.0


class Expectations:
    def __init__(self, ttl: float = TTL):
        self.ttl = ttl
        self._e: dict[str, list] = {}   # key -> [adds, dels, timestamp]
        self._deleting: dict[str, set[str]] = {}   # key -> Pod keys whose deletion is awaited

    def satisfied(self, key: str) -> bool:
        e = self._e.get(key)
        if e is None:
            return True
        return (e[0] <= 0 and e[1] <= 0) or time.monotonic() - e[2] > self.ttl

    def expect(self, key: str, adds: int = 0, deleting: list[str] | None = None) -> None:
        self._e[key] = [adds, len(deleting or []), time.monotonic()]
        self._deleting[key] = set(deleting or [])

    def lower(self, key: str, adds: int = 0, dels: int = 0) -> None:
        e = self._e.get(key)
        if e is not None:
            e[0] -= adds
            e[1] -= dels

    def creation_observed(self, key: str) -> None:
        self.lower(key, adds=1)

    def deletion_observed(self, key: str, pod_key: str) -> None:
        s = self._deleting.get(key)
        if s is not None and pod_key in s:
            s.discard(pod_key)
            self.lower(key, dels=1)

    def forget(self, key: str) -> None:
        self._e.pop(key, None)
        self._deleting.pop(key, None)
