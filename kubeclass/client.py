"""The small Kubernetes API client every kubeclass component uses (scheduler, node agent, controllers):
kubeconfig loading (server, CA, bearer token or client certificate), JSON requests that raise `ApiError`
with the server's Status, list+watch with resourceVersion resume, and Events.

It speaks to any Kubernetes API server; components never reach into the server's internals.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import random
import ssl
import tempfile
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import yaml

from .api.meta import now_rfc3339  # noqa: F401 - components stamp times through the client module
from .httpclient import HTTPClient, TransportError

log = logging.getLogger("kubeclass.client")


class ApiError(Exception):
    def __init__(self, status: int, body: dict | str):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__(f"{status}: {self.body.get('message', body)}")

    @property
    def reason(self) -> str:
        return self.body.get("reason", "")


@dataclass
class Config:
    server: str
    token: str | None = None
    ca_data: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> "Config":
        path = path or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        with open(path) as f:
            kc = yaml.safe_load(f)
        ctx_name = context or kc.get("current-context")
        ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in kc.get("users", []) if u["name"] == ctx.get("user")), {})
        ca = None
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            with open(cluster["certificate-authority"], "rb") as f:
                ca = f.read()
        cfg = cls(cluster["server"].rstrip("/"), user.get("token"), ca, insecure=bool(cluster.get("insecure-skip-tls-verify")))
        if user.get("client-certificate-data"):
            cfg.cert_file = _tmp(base64.b64decode(user["client-certificate-data"]))
            cfg.key_file = _tmp(base64.b64decode(user["client-key-data"]))
        elif user.get("client-certificate"):
            cfg.cert_file, cfg.key_file = user["client-certificate"], user.get("client-key")
        return cfg


def _tmp(data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="kubeclass-client-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def now_micro() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def path_for(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
    p = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        p += f"/namespaces/{quote(namespace)}"
    p += f"/{plural}"
    if name:
        p += f"/{quote(name)}"
    if sub:
        p += f"/{sub}"
    return p


class Client:
    def __init__(self, config: Config, user_agent: str = "kubeclass", limit: int = 64):
        self.config = config
        self.user_agent = user_agent
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None   # watches (streamed)
        self._http: HTTPClient | None = None                   # every other request
        self._events: dict[tuple, tuple[str, int]] = {}   # recent events, for folding repeats
        self._spam: dict[tuple, tuple[float, float]] = {}   # source+object -> (tokens, last refill)

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.config.server.startswith("https"):
            return False
        if self.config.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cadata=self.config.ca_data.decode() if self.config.ca_data else None)
        if self.config.cert_file:
            ctx.load_cert_chain(self.config.cert_file, self.config.key_file)
        return ctx

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=self._limit), headers=headers,
                json_serialize=lambda o: orjson.dumps(o).decode(), timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    @property
    def http(self) -> HTTPClient:
        if self._http is None:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            ctx = self._ssl()
            # up to 32 connections, opened only while every open one has requests waiting: an HTTP/1.1
            # server answers one request per connection at a time, and a write waits for its commit, so a
            # scheduler binding hundreds of Pods a second needs that many in flight (8 gave 570 pods/s
            # in bench/scheduler, 32 gave 650)
            self._http = HTTPClient(self.config.server, ctx if isinstance(ctx, ssl.SSLContext) else None, headers,
                                    connections=min(self._limit, 32))
        return self._http

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._http is not None:
            await self._http.close()

    async def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json", timeout: float = 30) -> dict:
        """One API call (not a watch): the decoded JSON body. Raises ApiError for an error status and
        TransportError when no response came (a GET is retried once on a fresh connection first)."""
        if params:
            path += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        data = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        for attempt in (0, 1):
            try:
                status, _, raw = await self.http.request(method, path, data, content_type, timeout)
                break
            except TransportError:
                if method != "GET" or attempt:
                    raise
        try:
            out = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            out = {"message": raw.decode(errors="replace")}
        if status >= 400:
            raise ApiError(status, out)
        return out

    # ---- verbs
    async def get(self, path: str) -> dict:
        return await self.request("GET", path)

    async def list(self, path: str, **params) -> dict:
        """A list, its items typed as a typed client's are (upstream leaves kind / apiVersion out of built-in items)."""
        lst = await self.request("GET", path, params=params or None)
        kind, api_version = lst.get("kind", ""), lst.get("apiVersion", "")
        if kind.endswith("List"):
            for item in lst.get("items") or []:
                if isinstance(item, dict):
                    item.setdefault("kind", kind[:-4])
                    item.setdefault("apiVersion", api_version)
        return lst

    async def create(self, path: str, obj: dict) -> dict:
        return await self.request("POST", path, obj)

    async def patch(self, path: str, patch: Any, kind: str = "strategic") -> dict:
        ct = {"strategic": "application/strategic-merge-patch+json", "merge": "application/merge-patch+json",
              "json": "application/json-patch+json"}[kind]
        return await self.request("PATCH", path, patch, content_type=ct)

    async def update(self, path: str, obj: dict) -> dict:
        return await self.request("PUT", path, obj)

    async def delete(self, path: str, body: dict | None = None) -> dict:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, resource_version: str, **params) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) pairs from one watch request; ends when the server closes it. Raises ApiError
        (410 Expired when the resourceVersion is too old)."""
        q = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true", **params}
        url = self.config.server + path + "?" + urlencode(q)
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            if r.status >= 400:
                raise ApiError(r.status, orjson.loads(await r.read() or b"{}"))
            buf = b""
            async for chunk in r.content.iter_any():
                lines = (buf + chunk).split(b"\n")
                buf = lines.pop()      # the unfinished line, if any
                for line in lines:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    if ev.get("type") == "ERROR":
                        st = ev.get("object") or {}
                        raise ApiError(st.get("code", 500), st)
                    yield ev["type"], ev["object"]

    async def informer(self, path: str, handler, stop: asyncio.Event | None = None, **params) -> None:
        """List then watch forever, calling `handler(type, obj)` (type ADDED/MODIFIED/DELETED, and SYNCED
        once after each full list with obj = the list); relists after 410 Expired or a dropped watch."""
        while stop is None or not stop.is_set():
            try:
                lst = await self.list(path, **params)
                await _call(handler, "SYNCED", lst)
                rv = lst["metadata"].get("resourceVersion", "0")
                while stop is None or not stop.is_set():
                    async for typ, obj in self.watch(path, rv, **params):
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if typ != "BOOKMARK":
                            await _call(handler, typ, obj)
            except ApiError as e:
                if e.status != 410:
                    await asyncio.sleep(1)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                await asyncio.sleep(0.5)

    def _spam_allows(self, key: tuple) -> bool:
        """Each source may post 25 events about one object, then one per 5 minutes (client-go's spam filter):
        a ReplicaSet of 1,000 Pods does not post 1,000 SuccessfulCreate events."""
        return _spam_check(self._spam, key, time.monotonic())

    async def event(self, regarding: dict, reason: str, message: str, type: str = "Normal", component: str = "",
                    action: str = "", host: str = "") -> None:
        """A core/v1 Event about `regarding`, as a component reports it (message capped at 1024 chars).
        Repeats of the same event are folded into one whose count grows, as client-go's recorder does
        (kubectl describe shows `(x3 over 10s)`)."""
        md = regarding.get("metadata", {})
        ns = md.get("namespace") or "default"
        if not self._spam_allows((component, host, regarding.get("kind", ""), ns, md.get("name", ""), md.get("uid", ""),
                                  regarding.get("apiVersion", ""))):
            return
        if len(message) > 1024:
            message = message[:1020] + " ..."
        now = now_rfc3339()
        field_path = regarding.get("_fieldPath", "")   # a container: spec.containers{name}
        seen_key = (md.get("uid", ""), md.get("name", ""), field_path, reason, message, type, component)
        seen = self._events.get(seen_key)
        if seen is not None:
            name, count = seen
            try:
                await self.patch(path_for("", "v1", "events", ns, name), {"count": count + 1, "lastTimestamp": now}, kind="merge")
                self._events[seen_key] = (name, count + 1)
                return
            except ApiError:
                self._events.pop(seen_key, None)
        if len(self._events) > 4096:
            self._events.clear()
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{md.get('name', '')}.{random.getrandbits(64):016x}", "namespace": ns},
              "involvedObject": {"apiVersion": regarding.get("apiVersion", "v1"), "kind": regarding.get("kind", ""),
                                 "name": md.get("name", ""), **({"namespace": md["namespace"]} if md.get("namespace") else {}),
                                 "uid": md.get("uid", ""), "resourceVersion": md.get("resourceVersion", ""),
                                 **({"fieldPath": field_path} if field_path else {})},
              "reason": reason, "message": message, "type": type, "action": action,
              "source": {"component": component, **({"host": host} if host else {})}, "reportingComponent": component,
              "reportingInstance": host or component,
              "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            await self.create(path_for("", "v1", "events", ns), ev)
            self._events[seen_key] = (ev["metadata"]["name"], 1)
        except (ApiError, TransportError) as e:
            # events are best effort, as client-go's recorder: a lost one is logged, never raised
            log.debug("event %s for %s/%s not recorded: %s", reason, ns, md.get("name", ""), e)


SPAM_BURST, SPAM_REFILL = 25, 300.0   # client-go's EventSourceObjectSpamFilter: 25 events, then 1 per 5 minutes


def _spam_check(buckets: dict, key: tuple, now: float) -> bool:
    tokens, last = buckets.get(key, (float(SPAM_BURST), now))
    tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL)
    if tokens < 1:
        buckets[key] = (tokens, now)
        return False
    if len(buckets) > 4096:
        buckets.clear()
    buckets[key] = (tokens - 1, now)
    return True


async def _call(fn, *args):
    r = fn(*args)
    if asyncio.iscoroutine(r):
        await r
