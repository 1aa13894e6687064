"""The scheduling queue: activeQ ordered by priority then arrival, backoffQ (1 s doubling to 10 s, as
upstream's defaults), and unschedulable Pods that wait for a cluster event that could help (a node added
or changed, a pod deleted) or for 5 minutes at most."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE = 300.0


def _changed_for_scheduling(old: dict, new: dict) -> bool:
    """Upstream's isPodUpdated: ignores status, resourceVersion, generation and managedFields."""
    def strip(p: dict) -> tuple:
        md = {k: v for k, v in (p.get("metadata") or {}).items() if k not in ("resourceVersion", "generation", "managedFields")}
        return (md, p.get("spec"))
    return strip(old) != strip(new)


class SchedulingQueue:
    def __init__(self) -> None:
        self._active: list[tuple[int, int, str]] = []
        self._in_active: set[str] = set()
        self._seq = itertools.count()
        self.pods: dict[str, dict] = {}             # key -> latest pod object
        self.attempts: dict[str, int] = {}
        self._backoff: dict[str, float] = {}        # key -> ready at
        self._unschedulable: dict[str, float] = {}  # key -> since
        self._in_flight: set[str] = set()
        self._moved_while_in_flight: set[str] = set()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self.pods)

    @staticmethod
    def key(pod: dict) -> str:
        md = pod["metadata"]
        return f"{md.get('namespace', '')}/{md['name']}"

    def _push(self, key: str) -> None:
        if key in self._in_active or key in self._in_flight:
            return
        pod = self.pods.get(key)
        if pod is None:
            return
        prio = int((pod.get("spec") or {}).get("priority") or 0)
        heapq.heappush(self._active, (-prio, next(self._seq), key))
        self._in_active.add(key)
        self._wake.set()

    def add(self, pod: dict) -> None:
        key = self.key(pod)
        known = key in self.pods
        self.pods[key] = pod
        if not known:
            self._push(key)

    def update(self, pod: dict) -> None:
        key = self.key(pod)
        old = self.pods.get(key)
        self.pods[key] = pod
        if old is not None and not _changed_for_scheduling(old, pod):
            return   # a status or bookkeeping change (our own PodScheduled condition): nothing new to try
        if key in self._unschedulable:   # an update may make it schedulable
            del self._unschedulable[key]
            self._push(key)

    def delete(self, key: str) -> None:
        self.pods.pop(key, None)
        self.attempts.pop(key, None)
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)
        self._in_active.discard(key)

    def done(self, key: str) -> None:
        """The cycle for `key` ended in success: forget it."""
        self._in_flight.discard(key)
        self._moved_while_in_flight.discard(key)
        self.delete(key)

    def requeue_unschedulable(self, key: str) -> None:
        self._in_flight.discard(key)
        if key not in self.pods:
            return
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if key in self._moved_while_in_flight:   # something changed while we tried: back off, don't park
            self._moved_while_in_flight.discard(key)
            self._backoff[key] = time.monotonic() + self.backoff_for(key)
        else:
            self._unschedulable[key] = time.monotonic()
        self._wake.set()

    def requeue_error(self, key: str) -> None:
        self._in_flight.discard(key)
        if key in self.pods:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            self._backoff[key] = time.monotonic() + self.backoff_for(key)
            self._wake.set()

    def backoff_for(self, key: str) -> float:
        n = self.attempts.get(key, 1)
        return min(INITIAL_BACKOFF * (2 ** max(n - 1, 0)), MAX_BACKOFF)

    def move_all(self) -> None:
        """A cluster event that may make unschedulable Pods fit: to backoff (if still backing off) or active."""
        for key, since in list(self._unschedulable.items()):
            del self._unschedulable[key]
            self._backoff[key] = since + self.backoff_for(key)   # ready once its back-off since the last try is over
        self._moved_while_in_flight |= self._in_flight
        self._wake.set()

    def _flush(self) -> float | None:
        """Move ready backoff pods and long-parked pods to active; returns seconds to the next deadline."""
        now = time.monotonic()
        nxt = None
        for key, ready in list(self._backoff.items()):
            if ready <= now:
                del self._backoff[key]
                self._push(key)
            else:
                nxt = ready - now if nxt is None else min(nxt, ready - now)
        for key, since in list(self._unschedulable.items()):
            if now - since >= MAX_UNSCHEDULABLE:
                del self._unschedulable[key]
                self._push(key)
            else:
                left = MAX_UNSCHEDULABLE - (now - since)
                nxt = left if nxt is None else min(nxt, left)
        return nxt

    async def pop(self) -> dict:
        while True:
            nxt = self._flush()
            while self._active:
                _, _, key = heapq.heappop(self._active)
                self._in_active.discard(key)
                pod = self.pods.get(key)
                if pod is not None:
                    self._in_flight.add(key)
                    return pod
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=nxt if nxt is not None else 1.0)
            except asyncio.TimeoutError:
                pass

    def pending_counts(self) -> dict[str, int]:
        return {"active": len(self._active), "backoff": len(self._backoff), "unschedulable": len(self._unschedulable)}
