"""The agent's HTTPS endpoint (kubelet's): container logs at /containerLogs/{namespace}/{pod}/{container}
(follow, previous, tailLines, limitBytes, timestamps, sinceSeconds, sinceTime), read from the CRI-format
log files that conmon writes, and the streaming /exec/{namespace}/{pod}/{container} (streams.py) and
/portForward/{namespace}/{pod} (portforward.py). Only the API server may call it: TLS client certificates are
required and verified against the cluster CA from the agent's kubeconfig, and the certificate must name
kube-apiserver-kubelet-client (or carry O=system:masters). The serving certificate is self-signed, made
once per node (the API server does not verify it, as kube-apiserver does not by default)."""
from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from urllib.parse import quote

from aiohttp import web
from ..servingcert import self_signed
from . import crilog, portforward, streams
from .runtimes import container_state

log = logging.getLogger("kubeclass.node")
ALLOWED_CN = "kube-apiserver-kubelet-client"
STATUS_HEADER = "X-Kubeclass-Status-Message"


def serving_cert(pki: str, node_name: str, address: str) -> tuple[str, str]:
    return self_signed(pki, f"{node_name}@kubeclass", address, stem="kubelet", dns=node_name)


def _error(status: int, message: str) -> web.Response:
    """A Status reply. Its message is repeated in a header: a client whose WebSocket handshake was refused
    (the API server's aiohttp) sees headers but not the body."""
    reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(status, "InternalError")
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": status}, status=status,
                             headers={STATUS_HEADER: quote(message, safe=" ")})


class LogServer:
    def __init__(self, pods, ca_pem: bytes | None, pki: str, node_name: str, address: str, port: int):
        self.pods = pods   # the PodManager
        self.ca_pem, self.pki, self.node_name, self.address, self.port = ca_pem, pki, node_name, address, port
        self.runner: web.AppRunner | None = None
        self.stats = None   # podstats.Stats: /stats/summary
        self.metrics = None   # metrics.NodeMetrics: /metrics

    def ssl_context(self) -> ssl.SSLContext:
        crt, key = serving_cert(self.pki, self.node_name, self.address)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        return ctx

    async def start(self) -> None:
        app = web.Application(middlewares=[self._only_the_api_server])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_get("/exec/{namespace}/{pod}/{container}", lambda r: streams.exec_handler(self, r))
        app.router.add_get("/portForward/{namespace}/{pod}", lambda r: portforward.handler(self, r))
        app.router.add_get("/attach/{namespace}/{pod}/{container}", lambda r: streams.attach_handler(self, r))
        app.router.add_get("/stats/summary", self.stats_summary)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.address, self.port, ssl_context=self.ssl_context(), reuse_address=True)
        await site.start()
        log.info("node %s: serving container logs on https://%s:%d", self.node_name, self.address, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _only_the_api_server(self, request: web.Request, handler):
        """Every endpoint but /healthz answers the API server's certificate only (kubelet's verbs: reading logs
        is get, the streams are create)."""
        if request.path != "/healthz" and not self._authorized(request):
            verb = "get" if request.path.startswith(("/containerLogs/", "/stats/", "/metrics")) else "create"
            return _error(403, f"Forbidden (user=unknown, verb={verb}, resource=nodes, subresource=proxy)")
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if not cert:
            return False
        subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
        return subject.get("commonName") == ALLOWED_CN or subject.get("organizationName") == "system:masters"

    error = staticmethod(_error)

    async def stats_summary(self, request: web.Request) -> web.Response:
        """kubelet's Summary API (stats/v1alpha1): the node's, its Pods' and their containers' CPU and memory."""
        if self.stats is None:
            return _error(404, "the node's statistics are not collected")
        reading, rates = await self.stats.sample()
        return web.json_response(self.stats.summary(reading, rates))

    async def prometheus(self, request: web.Request) -> web.Response:
        if self.metrics is None:
            return _error(404, "the node's metrics are not collected")
        from ..metricsexport import render
        body, ctype = render(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": ctype})

    def find_worker(self, ns: str, pod_name: str):
        return next((w for w in list(self.pods.workers.values())
                     if w.pod["metadata"]["name"] == pod_name and w.pod["metadata"].get("namespace") == ns), None)

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod_name, cname = request.match_info["namespace"], request.match_info["pod"], request.match_info["container"]
        q = request.query
        worker = self.find_worker(ns, pod_name)
        if worker is None:
            return _error(404, f'pod "{pod_name}" in namespace "{ns}" is not running on node {self.node_name}')
        c = next((c for c in worker.containers if c.name == cname), None)
        if c is None:
            return _error(400, f"container {cname} is not valid for pod {pod_name}")
        previous = q.get("previous", "").lower() in ("1", "true")
        if previous:
            if c.attempt < 1:
                return _error(400, f'previous terminated container "{cname}" in pod "{pod_name}" not found')
            attempt = c.attempt - 1
        else:
            if c.attempt < 0:
                reason = c.waiting[0] or "ContainerCreating"
                if worker.failed is not None:
                    reason = worker.failed[0]
                return _error(400, f'container "{cname}" in pod "{pod_name}" is waiting to start: {reason}')
            attempt = c.attempt
        path = c.log_path(worker.dir, attempt)
        workdir = c.workdir(worker.dir, attempt)
        try:
            raw = open(path, "rb").read()
        except OSError:
            raw = b""
        timestamps = q.get("timestamps", "").lower() in ("1", "true")
        since = None
        if q.get("sinceSeconds"):
            since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=int(q["sinceSeconds"]))
        elif q.get("sinceTime"):
            since = crilog.parse_time(q["sinceTime"])
        records, offset = crilog.parse(raw)
        if q.get("tailLines") is not None:
            records = crilog.tail(records, int(q["tailLines"]))
        data = b"".join(crilog.render(records, timestamps, since))
        after_partial = bool(records) and not records[-1].full
        limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        if limit is not None:
            data = data[:limit]
        follow = q.get("follow", "").lower() in ("1", "true") and not previous
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if follow:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent = len(data)
        await resp.write(data)
        if follow and (limit is None or sent < limit):
            while True:
                done = container_state(workdir)["state"] == "exited"
                try:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        more_raw = f.read()
                except OSError:
                    more_raw = b""
                records, used = crilog.parse(more_raw)
                offset += used
                more = b"".join(crilog.render(records, timestamps, after_partial=after_partial))
                if records:
                    after_partial = not records[-1].full
                if more:
                    if limit is not None:
                        more = more[: limit - sent]
                    sent += len(more)
                    await resp.write(more)
                    if limit is not None and sent >= limit:
                        break
                elif done or worker.finished:
                    break
                await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp
