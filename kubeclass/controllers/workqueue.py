"""A work queue as client-go's workqueue: a key is queued at most once, never processed by two workers at
once (added again while processing, it comes back after `done`), retried after a per-key exponential
back-off (5 ms doubling up to 1000 s, as DefaultControllerRateLimiter's item limiter), and can be added
after a delay. Plus the worker loop every controller runs on it."""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Awaitable, Callable

from ..client import ApiError
from ..httpclient import TransportError
from . import metrics

log = logging.getLogger("kubeclass.workqueue")


class WorkQueue:
    def __init__(self, name: str, base_delay: float = 0.005, max_delay: float = 1000.0):
        self.name = name
        self.base_delay, self.max_delay = base_delay, max_delay
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._waiting: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._cond = asyncio.Condition()
        self._closed = False
        self._added: dict[str, float] = {}   # when a queued key was added (workqueue_queue_duration_seconds)
        self._m_adds, self._m_depth = metrics.ADDS.labels(name), metrics.DEPTH.labels(name)
        self._m_queued, self._m_work = metrics.QUEUED.labels(name), metrics.WORK.labels(name)
        self._m_retries = metrics.RETRIES.labels(name)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        self._m_adds.inc()
        if key in self._processing:
            return
        self._queue.append(key)
        self._added[key] = time.monotonic()
        self._m_depth.set(len(self._queue))
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        cur = self._waiting.get(key)
        if cur is not None:
            if cur[0] <= when:
                return
            cur[1].cancel()

        def fire() -> None:
            self._waiting.pop(key, None)
            self.add(key)
        self._waiting[key] = (when, loop.call_at(when, fire))

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self._m_retries.inc()
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        async with self._cond:
            while not self._queue:
                await self._cond.wait()
            key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        now = time.monotonic()
        self._m_queued.observe(now - self._added.pop(key, now))
        self._m_depth.set(len(self._queue))
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._added[key] = time.monotonic()
            self._m_depth.set(len(self._queue))
            asyncio.ensure_future(self._notify())

    def shutdown(self) -> None:
        self._closed = True
        for _, h in self._waiting.values():
            h.cancel()
        self._waiting.clear()


class Requeue(Exception):
    """Raised by a sync to try the key again later (with back-off), without logging a failure."""


async def run_workers(queue: WorkQueue, sync: Callable[[str], Awaitable[None]], workers: int) -> None:
    async def worker() -> None:
        while True:
            key = await queue.get()
            t0 = time.monotonic()
            try:
                await sync(key)
                queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Requeue:
                queue.add_rate_limited(key)
            except (ApiError, TransportError) as e:
                log.info("%s: syncing %s: %s (retrying)", queue.name, key, e)
                queue.add_rate_limited(key)
            except Exception:  # noqa: BLE001 - a bug on one key must not stop the controller
                log.exception("%s: syncing %s failed", queue.name, key)
                queue.add_rate_limited(key)
            finally:
                queue._m_work.observe(time.monotonic() - t0)
                queue.done(key)
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        queue.shutdown()
