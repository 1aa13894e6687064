"""Prometheus metrics, as every Kubernetes component exposes them: one registry per component (so `kubeclass up`,
which runs them all in one process, still gives each its own /metrics), with the process collectors upstream
components have (process_cpu_seconds_total, process_resident_memory_bytes, ...), rendered in the Prometheus text
format by the official client library.

The scheduler's and the controllers' own endpoints (`--metrics-port`, as kube-scheduler's 10259 and
kube-controller-manager's 10257) serve HTTPS and authorize like theirs, by delegation: the caller's bearer token
is put to the API server in a SelfSubjectAccessReview for `get` on the non-resource URL /metrics (RBAC: the
system:monitoring ClusterRole grants it), decisions kept for ten seconds."""
from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("kubeclass")
disable_created_metrics()   # Kubernetes components expose no *_created series


def new_registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(reg), CONTENT_TYPE_LATEST


class DelegatedAuth:
    """Bearer tokens checked against the API server: a SelfSubjectAccessReview made with the caller's token."""

    TTL = 10.0

    def __init__(self, config):
        self.config = config   # the component's client.Config (server URL and CA)
        self._cache: dict[str, tuple[float, int]] = {}

    async def check(self, authorization: str | None, path: str = "/metrics") -> int:
        """200 when allowed, 401 without a valid token, 403 when RBAC says no."""
        from .client import ApiError, Client, Config, TransportError
        parts = (authorization or "").split(" ", 1)
        if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].strip():
            return 401
        token = parts[1].strip()
        key = f"{token}\0{path}"
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.TTL:
            return hit[1]
        cfg = Config(self.config.server, token, self.config.ca_data, insecure=self.config.insecure)
        client = Client(cfg, user_agent="kubeclass-metrics-authz")
        try:
            r = await client.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"nonResourceAttributes": {"path": path, "verb": "get"}}})
            code = 200 if (r.get("status") or {}).get("allowed") else 403
        except ApiError as e:
            code = 401 if e.status == 401 else 403
        except TransportError:
            return 503
        finally:
            await client.close()
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), code)
        return code


async def serve(reg: CollectorRegistry, config, address: str, port: int, pki_dir: str, name: str):
    """An HTTPS /metrics (and /healthz) endpoint for a component; returns the aiohttp runner (None when the port
    cannot be bound: logged, the component runs on)."""
    from aiohttp import web

    from .servingcert import self_signed
    auth = DelegatedAuth(config)

    async def metrics(request: web.Request) -> web.Response:
        code = await auth.check(request.headers.get("Authorization"))
        if code != 200:
            msg = {401: "Unauthorized", 403: 'forbidden: User cannot get path "/metrics"', 503: "the API server is not reachable"}[code]
            return web.Response(status=code, text=msg + "\n")
        body, ctype = render(reg)
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    import ssl
    crt, key = self_signed(pki_dir, name, address)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    try:
        await web.TCPSite(runner, address, port, ssl_context=ctx, reuse_address=True).start()
    except OSError as e:
        log.warning("%s: /metrics not served on %s:%d: %s", name, address, port, e)
        await runner.cleanup()
        return None
    log.info("%s: serving /metrics on https://%s:%d", name, address, port)
    return runner


async def serve_forever(reg, config, address: str, port: int, pki_dir: str, name: str) -> None:
    runner = await serve(reg, config, address, port, pki_dir, name)
    try:
        await asyncio.Event().wait()
    finally:
        if runner is not None:
            await runner.cleanup()
