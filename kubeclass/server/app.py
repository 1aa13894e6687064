"""The API server as a plain ASGI application (served over TLS by granian, see serving.py).

Routes: /healthz /livez /readyz /version, discovery (/api, /apis, ...), /openapi/v2 and /openapi/v3,
and every registered resource under /api/v1 and /apis/<group>/<version>, namespaced or not, with
subresources. Every error leaves as a `Status`; no traceback ever reaches the wire.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import urllib.parse
from typing import Any

import orjson

from ..api import apiservices, clusterdns, errors, impersonation, limits, params, registry, remotecommand
from ..api.errors import StatusError
from ..store import Compacted, StoreFull
from ..admission import Chain
from ..api.rbac import RequestAttributes, forbidden_message
from . import discovery, podlogs, podstreams, protobuf, satokens, service_alloc, tables
from .auth import TokenFile, User
from .authz import EscalationGuard, RBACAuthorizer, bootstrap
from .constraint_kinds import ConstraintKinds
from . import metrics as reqmetrics
from .. import ui
from ..metricsexport import render as render_metrics
from .metrics_api import MetricsAPI
from .quota_status import QuotaStatus
from .rest import REST, Context, Result, encode, parse_bool

log = logging.getLogger("kubeclass.server")
MAX_BODY = 3 * 1024 * 1024
DRAIN_BODY = 16 * 1024 * 1024
PUBLIC = {"/healthz", "/livez", "/readyz"}
IMMORTAL_NAMESPACES = {"default", "kube-system", "kube-public"}
NODE_PROXY_MAX = 64 << 20   # bytes of a node's answer through nodes/proxy (not streamed)


class ProxySubresource(str):
    """The `proxy` subresource of a node, carrying the path it proxies to (the route keeps its seven fields)."""

    def __new__(cls, rest: str):
        obj = super().__new__(cls, "proxy")
        obj.rest = rest
        return obj


def pretty_json(body: bytes) -> bytes:
    """JSON indented by two spaces, as Go's MarshalIndent (kube-apiserver's pretty output)."""
    try:
        obj = orjson.loads(body)
        if isinstance(obj, dict) and "kind" in obj:   # Go's TypeMeta order: kind, then apiVersion, then the rest
            obj = {"kind": obj["kind"], **({"apiVersion": obj["apiVersion"]} if "apiVersion" in obj else {}), **obj}
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return body


def _verb(method: str, name: str | None, sub: str | None, query: dict) -> str:
    """The Kubernetes verb of a request (RequestInfo): get/list/watch/create/update/patch/delete/deletecollection."""
    if method == "GET":
        if parse_bool(query.get("watch", "")):
            return "watch"
        return "get" if name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return method.lower()


class APIServer:
    def __init__(self, store, tokens: TokenFile, address: str = "127.0.0.1:6443", bookmark_interval: float = 60.0,
                 kubelet_client: tuple[str, str] | None = None, body_timeout: float = 60.0,
                 toleration_seconds: tuple[int, int] = (300, 300), issuer=None, service_cidr: str = "10.96.0.0/12"):
        self.store = store
        self.issuer = issuer   # service account tokens (satokens.TokenIssuer), when the server signs them
        self.sa_auth = satokens.ServiceAccountAuthenticator(issuer, store) if issuer is not None else None
        self.body_timeout = body_timeout   # seconds a request body may take to arrive (a trickled body is refused)
        self.node_client = podlogs.NodeClient(*(kubelet_client or (None, None)))
        self.metrics_api = MetricsAPI(store, self.node_client)
        self.metrics = reqmetrics.APIServerMetrics()
        self.tokens = tokens
        self.address = address
        self.authorizer = RBACAuthorizer(store)
        locks: dict[str, asyncio.Lock] = {}  # admission serialization, shared with the quota status refresher
        self.quota_status = QuotaStatus(store, locks)
        self.rest = REST(store, Chain(writer=self.quota_status, toleration_seconds=toleration_seconds), locks)
        self.rest.guard = EscalationGuard(self.authorizer)
        self.rest.committed = self._committed  # type: ignore[method-assign]
        self.services = service_alloc.Allocator(store, service_cidr)
        self.rest.hooks[("", "services")] = self.services
        self.constraint_kinds = ConstraintKinds(store)
        self.bookmark_interval = bookmark_interval
        self.ready = False
        self._tasks: set[asyncio.Task] = set()
        self._watchers: set = set()                 # open watch streams, ended at shutdown
        self._streams: set[asyncio.Task] = set()    # other long-running requests (follow logs), cancelled at shutdown
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.get(f"/registry/namespaces/{ns}") is None:
                ctx = Context("POST", {}, "application/json")
                try:
                    await self.rest.create(ctx, registry.BY_PATH[("", "v1", "namespaces")],
                                           {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                except StatusError:
                    pass
        await bootstrap(self.rest, registry)
        await self.services.repair(registry.BY_PATH[("", "v1", "services")].key_prefix(None))
        await self._kubernetes_service()
        await self._kube_dns_service()
        await self._local_apiservices()
        await self.constraint_kinds.sync()
        from .identity import Identity
        self.identity = Identity(self.store, self.address)
        self._spawn(self.identity.run())   # kube-system/apiserver-<id>: which servers are alive
        self.ready = True

    def end_streams(self) -> None:
        """Shutdown: every open watch ends with its closing chunk (clients watch again elsewhere or later, as from
        a kube-apiserver that stops), other streams are cancelled; the listener's graceful stop then has no
        request left to wait for."""
        self.stopping = True
        for w in list(self._watchers):
            w.close()
        for t in list(self._streams):
            t.cancel()

    async def _streaming(self, coro):
        t = asyncio.current_task()
        if self.stopping:
            coro.close()
            raise errors.StatusError(503, "ServiceUnavailable", "the API server is shutting down")
        self._streams.add(t)
        try:
            return await coro
        finally:
            self._streams.discard(t)

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _committed(self, res: registry.Resource, obj: dict, deleted: bool) -> None:
        if res.group == "templates.gatekeeper.sh":
            await self.constraint_kinds.sync()
        elif deleted and res.group == "" and res.plural == "services":
            await self.services.release(obj)

    async def _local_apiservices(self) -> None:
        """A Local APIService for every group/version this server serves (kube-apiserver's autoregistration)."""
        res = registry.BY_PATH[("apiregistration.k8s.io", "v1", "apiservices")]
        for group, versions in registry.group_versions().items():
            for version in versions:
                name = apiservices.name_of(group, version)
                if self.store.get(res.key(None, name)) is not None:
                    continue
                try:
                    await self.rest.create(Context("POST", {}, "application/json"), res, apiservices.local(group, version))
                except StatusError as e:
                    log.warning("APIService %s could not be created: %s", name, e.message)

    async def _kube_dns_service(self) -> None:
        """The kube-dns Service in kube-system (as kubeadm's DNS addon creates it): the range's 10th address, DNS on
        UDP and TCP 53; the node agents serve it (kubeclass/node/dnsserver.py)."""
        if self.store.get(registry.BY_PATH[("", "v1", "services")].key("kube-system", "kube-dns")) is not None:
            return
        labels = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
               "spec": {"type": "ClusterIP", "clusterIP": clusterdns.dns_service_ip(self.services.cidr), "selector": {"k8s-app": "kube-dns"},
                        "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                  {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}
        try:
            await self.rest.create(Context("POST", {}, "application/json", namespace="kube-system"),
                                   registry.BY_PATH[("", "v1", "services")], svc)
        except StatusError as e:
            log.warning("the kube-dns Service could not be created: %s", e.message)

    async def _kubernetes_service(self) -> None:
        """The `kubernetes` Service in default (upstream's apiserver reconciles it): the range's first address,
        port 443 (https) to this server's port."""
        if self.store.get(registry.BY_PATH[("", "v1", "services")].key("default", "kubernetes")) is not None:
            return
        port = int(self.address.rsplit(":", 1)[1])
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": self.services.first_ip, "sessionAffinity": "None",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}
        try:
            await self.rest.create(Context("POST", {}, "application/json", namespace="default"),
                                   registry.BY_PATH[("", "v1", "services")], svc)
        except StatusError as e:
            log.warning("the kubernetes Service could not be created: %s", e.message)

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}   # ASGI names are lower-case
        method = scope["method"]
        path = scope["path"]
        qs = scope.get("query_string")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs.decode("latin-1"), keep_blank_values=True).items()} if qs else {}
        start = time.monotonic()
        route = self._route_or_none(path.rstrip("/") or "/")
        lbl = reqmetrics.labels(method, path, route, query, headers.get("content-type", ""))
        long_running = lbl[0] in ("WATCH", "CONNECT") or (lbl[5] == "log" and query.get("follow", "").lower() in ("1", "true"))
        inflight = self.metrics.long_running(lbl) if long_running else self.metrics.ro if method == "GET" else self.metrics.mut
        inflight.inc()
        try:
            body = await self._read_body(receive, headers)
            impersonate = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.startswith(b"impersonate-")]
            result = await self.handle(method, path, query, headers, body, receive, send, impersonate, route)
        except StatusError as e:
            result = Result(e.code, encode(e.status()))
        except StoreFull as e:   # logged once per incident by the store; reads go on
            result = Result(500, encode(errors.internal(str(e)).status()))
        except Exception:
            log.exception("internal error on %s %s", method, path)
            result = Result(500, encode(errors.internal("an unexpected error occurred; see the server log").status()))
        finally:
            inflight.dec()
        if result is None:  # streamed
            self.metrics.observe(lbl, 200, None if lbl[0] in ("WATCH", "CONNECT") else time.monotonic() - start)
            return
        if result.content_type.startswith("application/json") and params.pretty(query, headers.get("user-agent", "")):
            result.body = pretty_json(result.body)
        hdrs = [(b"content-type", result.content_type.encode()), (b"cache-control", b"no-cache, private"),
                (b"content-length", b"%d" % len(result.body))]
        for w in result.warnings:
            hdrs.append((b"warning", ('299 - "' + w.replace('"', '\\"') + '"').encode()))
        hdrs += result.headers
        await send({"type": "http.response.start", "status": result.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": result.body})
        self.metrics.observe(lbl, result.status, time.monotonic() - start)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %d %.1fms", method, path, result.status, (time.monotonic() - start) * 1000)

    # ------------------------------------------------------------------ WebSocket: pods/exec, pods/portforward
    async def _websocket(self, scope, receive, send) -> None:
        """A WebSocket upgrade (kubectl 1.30+ exec / cp / attach / port-forward, the official clients' stream() and
        portforward()): authenticated and authorized as any request, then relayed to the Pod's node agent.
        Refused before the upgrade with a Status, as kube-apiserver refuses it."""
        if (await receive())["type"] != "websocket.connect":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"].rstrip("/") or "/"
        qs = scope.get("query_string") or b""
        multi = urllib.parse.parse_qs(qs.decode("latin-1"), keep_blank_values=True)
        query = {k: v[-1] for k, v in multi.items()}
        try:
            user = self._authenticate(headers.get("authorization"))
            if user is None:
                raise errors.unauthorized()
            impersonate = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.startswith(b"impersonate-")]
            if impersonate:
                user = self._impersonate(user, impersonate)
            route = self._route_or_none(path)
            attrs = self.request_attributes("GET", path, query, user, route)
            if not self.authorizer.authorize(attrs):
                raise self.forbidden(attrs)
            sub = route[6] if route is not None and route[0] == "res" else None
            if sub not in ("exec", "attach", "portforward") or route[1] != "" or route[4] != "pods" or not route[5]:
                raise StatusError(400, "BadRequest", "this resource does not serve WebSocket upgrades")
            # the upgrade is a GET; running a command or forwarding a port also needs `create` (upstream's
            # AuthorizePodWebsocketUpgradeCreatePermission), so `get pods/exec` alone never runs one
            create = dataclasses.replace(attrs, verb="create")
            if not self.authorizer.authorize(create):
                raise self.forbidden(create)
            pods = registry.BY_PATH[("", "v1", "pods")]
            ns, name = route[3], route[5]
            ent = self.store.get(pods.key(ns, name))
            if ent is None:
                raise errors.not_found("pods", "", name)
            node_name = (ent.obj.get("spec") or {}).get("nodeName")
            node_ent = self.store.get(registry.BY_PATH[("", "v1", "nodes")].key(None, node_name)) if node_name else None
            node_obj = node_ent.obj if node_ent else None
            if sub in ("exec", "attach"):
                url = podstreams.exec_location(ent.obj, node_obj, multi, sub)
                protocols = remotecommand.offered(headers.get("sec-websocket-protocol"))
            else:
                url = podstreams.portforward_location(ent.obj, node_obj, multi)
                protocols = podstreams.portforward_protocols(headers.get("sec-websocket-protocol"))
            lbl = reqmetrics.labels("GET", path, route, query, "")
            self.metrics.observe(lbl, 101, None)
            with self.metrics.long_running(lbl).track_inprogress():
                await self._streaming(podstreams.relay(self.node_client.session, url, protocols, receive, send))
        except StatusError as e:
            body = encode(e.status())
            await send({"type": "websocket.http.response.start", "status": e.code,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            await send({"type": "websocket.http.response.body", "body": body})
        except Exception:
            log.exception("internal error on the WebSocket %s", path)
            try:
                await send({"type": "websocket.close", "code": 1011})
            except Exception:  # noqa: BLE001 - the client is gone
                pass

    async def _read_body(self, receive, headers: dict) -> bytes:
        """The request body, at most MAX_BODY bytes (413 beyond). A too-large body is still read (and
        dropped) up to DRAIN_BODY bytes, so a client that sends it all before reading gets the 413
        rather than a connection reset."""
        cl = headers.get("content-length")
        if cl and cl.isdigit() and int(cl) > MAX_BODY:
            if int(cl) <= DRAIN_BODY:
                await self._drain(receive)
            raise errors.too_large(MAX_BODY)
        chunks = []
        size = 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    msg = await receive()
            except TimeoutError:
                raise StatusError(408, "Timeout", f"the request body did not arrive within {self.body_timeout:g}s") from None
            if msg["type"] == "http.disconnect":
                break
            b = msg.get("body", b"")
            size += len(b)
            if size > MAX_BODY:
                if msg.get("more_body"):
                    await self._drain(receive, DRAIN_BODY - size)
                raise errors.too_large(MAX_BODY)
            chunks.append(b)
            if not msg.get("more_body"):
                break
        return b"".join(chunks)

    @staticmethod
    async def _drain(receive, limit: int = 0) -> None:
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                return
            size += len(msg.get("body", b""))
            if limit and size > limit:
                return

    # ------------------------------------------------------------------ dispatch
    async def handle(self, method, path, query, headers, body, receive, send, impersonate=(), route=False) -> Result | None:
        """One request. route: its parsed route when the caller has it already (False: parse it here)."""
        if path in PUBLIC or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if path.startswith("/readyz") and not self.ready:
                return Result(500, b"[-]ready failed: not started\nreadyz check failed", "text/plain; charset=utf-8")
            return Result(200, b"ok", "text/plain; charset=utf-8")
        if method == "GET" and (path == "/ui" or path.startswith("/ui/")) and (asset := ui.asset(path)) is not None:
            return Result(200, asset[0], asset[1], headers=list(ui.HEADERS))   # the page holds no data: see kubeclass/ui
        user = self._authenticate(headers.get("authorization"))
        if user is None:
            raise errors.unauthorized()
        if impersonate:
            user = self._impersonate(user, impersonate)
        if path == "/ui/explain":
            return self._ui_explain(user, query)
        accept = headers.get("accept", "application/json")
        p = path.rstrip("/") or "/"
        if route is False:
            route = self._route_or_none(p)
        attrs = self.request_attributes(method, p, query, user, route)
        if not self.authorizer.authorize(attrs):
            raise self.forbidden(attrs)
        if p == "/version":
            return Result(200, encode(discovery.VERSION))
        if p == "/metrics":
            return Result(200, *render_metrics(self.metrics.registry))
        if self.issuer is not None and p == "/.well-known/openid-configuration":
            return Result(200, encode(self.issuer.openid_configuration()))
        if self.issuer is not None and p == "/openid/v1/jwks":
            return Result(200, encode(self.issuer.jwks()), "application/jwk-set+json")
        if p in ("/api", "/apis"):
            core = p == "/api"
            for ver, ct in (("v2", discovery.AGG_V2), ("v2beta1", discovery.AGG_V2BETA1)):
                if f"v={ver};as=APIGroupDiscoveryList" in accept.replace(" ", ""):
                    return Result(200, discovery.aggregated(core, ver), ct)
            return Result(200, encode(discovery.legacy_api(self.address) if core else discovery.legacy_apis()))
        if p == "/openapi/v3":
            return Result(200, discovery.openapi_v3_root())
        if p.startswith("/openapi/v3/"):
            gv = p[len("/openapi/v3/"):].split("/")
            g, v = ("", gv[1]) if gv[0] == "api" and len(gv) == 2 else (gv[1], gv[2]) if len(gv) == 3 else (None, None)
            if g is None or not registry.resources_in(g, v):
                raise errors.path_not_found()
            return Result(200, discovery.openapi_v3_gv(g, v))
        if p == "/openapi/v2":
            if "json" not in accept and "*/*" not in accept:
                raise errors.path_not_found()
            return Result(200, discovery.openapi_v2())
        if p == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]
            return Result(200, encode({"paths": paths}))
        return await self._resource(method, route, attrs.verb, query, headers, body, accept, user, receive, send)

    def _ui_explain(self, user: User, query: dict) -> Result:
        """The cluster view's per-node verdicts for a Pod, for whoever may `get` it."""
        ns, name = query.get("namespace", ""), query.get("name", "")
        if not ns or not name:
            raise errors.bad_request("namespace and name are required")
        attrs = RequestAttributes(user.name, user.groups, "get", True, "", "pods", "", ns, name)
        if not self.authorizer.authorize(attrs):
            raise self.forbidden(attrs)
        ent = self.store.get(registry.BY_PATH[("", "v1", "pods")].key(ns, name))
        if ent is None:
            raise errors.not_found("pods", "", name)
        from ..ui.verdicts import pod_verdicts
        return Result(200, encode(pod_verdicts(self.store, ent.obj)))

    def _authenticate(self, header: str | None) -> User | None:
        """A token from the token file, else a service account token we signed."""
        user = self.tokens.authenticate(header)
        if user is None and self.sa_auth is not None:
            parts = (header or "").split(" ", 2)
            if len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1].isascii():
                user = self.sa_auth.authenticate(parts[1].strip())
        return user

    def _impersonate(self, user: User, headers: list[tuple[str, str]]) -> User:
        """The identity a request asks to run as (kubectl --as / --as-group / --as-uid), once the requester has
        been allowed to `impersonate` each part of it, as upstream's impersonation filter does."""
        try:
            imp = impersonation.from_headers(headers)
        except impersonation.ImpersonationError as e:
            raise errors.bad_request(str(e))
        if imp is None:
            return user
        for a in imp.checks(user.name, user.groups):
            if not self.authorizer.authorize(a):
                raise self.forbidden(a)
        name, uid, groups, extra = imp.identity()
        return User(name, uid, groups, tuple((k, tuple(v)) for k, v in extra.items()))

    def _route_or_none(self, p: str):
        """The parsed API route of a path, or None when it is not one (a non-resource path)."""
        if not p.startswith(("/api/", "/apis/")):
            return None
        try:
            return self._route(p)
        except StatusError:
            return None

    def request_attributes(self, method: str, p: str, query: dict, user: User, route) -> RequestAttributes:
        """upstream RequestInfo: resource requests carry group/resource/subresource/namespace/name."""
        if route is None or route[0] != "res":
            return RequestAttributes(user.name, user.groups, method.lower(), False, path=p)
        _, group, _version, ns, plural, name, sub = route
        if plural == "namespaces" and name and ns is None:
            ns = name  # a namespace object is in its own namespace, so RoleBindings there can grant it
        return RequestAttributes(user.name, user.groups, _verb(method, name, sub, query), True, group, plural,
                                 sub or "", ns or "", name or "")

    @staticmethod
    def forbidden(a: RequestAttributes) -> StatusError:
        msg = forbidden_message(a)
        if not a.resource_request:
            return StatusError(403, "Forbidden", f"forbidden: {msg}", {})
        return errors.forbidden_status(a.resource, a.api_group, a.name, msg)

    def _route(self, p: str):
        parts = p.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                return ("group", parts[1])
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.path_not_found()
        if not rest:
            return ("gv", group, version)
        if group == "" and len(rest) > 3 and rest[0] == "nodes" and rest[2] == "proxy":
            return ("res", group, version, None, "nodes", rest[1], ProxySubresource("/".join(rest[3:])))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.path_not_found()
        return ("res", group, version, ns, rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)

    async def _resource(self, method, route, verb, query, headers, body, accept, user: User, receive, send):
        if route is None:
            raise errors.path_not_found()
        if route[0] == "group":
            g = discovery.legacy_group(route[1])
            if g is None:
                raise errors.path_not_found()
            return Result(200, encode(g))
        if route[0] == "gv":
            _, group, version = route
            if version not in registry.group_versions().get(group, []):
                raise errors.path_not_found()
            return Result(200, encode(discovery.resource_list(group, version)))
        _, group, version, ns, plural, name, sub = route
        ctype = headers.get("content-type", "")
        ctx = Context(method, query, accept, user, ns, name, sub)
        if method in ("POST", "PUT") and body and ctype.split(";")[0].strip().lower() in ("", "application/json") \
                and query.get("fieldValidation") != "Ignore":
            ctx.duplicates = limits.duplicate_fields(body)
        if (group, version, plural) in registry.VIRTUAL and method == "POST" and not name:
            return self._virtual(registry.VIRTUAL[(group, version, plural)], group, version, self._decode_body(ctype, body), user, ns)
        if (group, version, plural) in registry.COMPUTED:
            if sub is not None or (ns is not None and not registry.COMPUTED[(group, version, plural)][1]):
                raise errors.path_not_found()
            if verb not in ("get", "list"):
                raise errors.method_not_allowed()
            return Result(200, encode(await self.metrics_api.serve(plural, ns, name, query)))
        res = registry.BY_PATH.get((group, version, plural))
        if res is None:
            raise errors.path_not_found()
        if res.namespaced and ns is None and name is not None:
            raise errors.path_not_found()
        if not res.namespaced and ns is not None:
            raise errors.path_not_found()
        if sub is not None and sub not in res.subresources:
            raise errors.path_not_found()
        rest = self.rest
        if sub is None and verb not in res.verbs:
            raise errors.method_not_allowed()
        if verb == "delete" and res.kind.kind == "Namespace" and name in IMMORTAL_NAMESPACES:
            raise errors.forbidden_status("namespaces", "", name, "this namespace may not be deleted")
        if name is None:
            if verb == "watch":
                return await self._watch(ctx, res, receive, send)
            if verb == "list":
                return await rest.list(ctx, res)
            if method == "POST":
                return await rest.create(ctx, res, self._decode_body(ctype, body))
            if method == "DELETE":
                return await rest.delete_collection(ctx, res, self._decode_body(ctype, body) if body else None)
            raise errors.method_not_allowed()
        if sub == "binding":
            if method != "POST":
                raise errors.method_not_allowed()
            return await rest.binding(ctx, res, self._decode_body(ctype, body))
        if sub == "finalize":
            if method != "PUT":
                raise errors.method_not_allowed()
            return await rest.finalize(ctx, res, self._decode_body(ctype, body))
        if sub == "token":
            if method != "POST" or self.issuer is None:
                raise errors.method_not_allowed()
            tr = satokens.token_request(self.issuer, self.store, ns or "", name, self._decode_body(ctype, body), ctx.dry_run)
            return Result(201, encode(tr))
        if sub == "scale":
            if method == "PATCH":
                return await rest.scale(ctx, res, ctype, body)
            return await rest.scale(ctx, res, ctype, self._decode_body(ctype, body) if method == "PUT" else None)
        if sub in ("exec", "attach", "portforward"):
            ent = self.store.get(res.key(ns, name))
            if ent is None:
                raise errors.not_found(res.plural, res.group, name)
            if method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            if sub != "portforward":
                podstreams.choose_container(ent.obj, query.get("container", ""))
            if not (ent.obj.get("spec") or {}).get("nodeName"):
                raise errors.bad_request(f"pod {name} does not have a host assigned")
            if headers.get("upgrade", "").lower().startswith("spdy"):
                raise StatusError(400, "BadRequest", "this server does not speak SPDY/3.1 yet: use a client that streams over "
                                  "WebSocket (kubectl 1.30 or newer, the official clients' stream())")
            raise StatusError(400, "BadRequest", "Upgrade request required")
        if sub == "proxy":
            return await self._node_proxy(method, res, name, route, query)
        if sub == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            return await self._streaming(self._pod_log(res, ns, name, query, send))
        if verb == "watch":
            return await self._watch(ctx, res, receive, send)
        if verb == "get":
            return await rest.get(ctx, res)
        if method == "PUT":
            return await rest.update(ctx, res, self._decode_body(ctype, body))
        if method == "PATCH":
            return await rest.patch(ctx, res, ctype, body)
        if method == "DELETE":
            return await rest.delete(ctx, res, self._decode_body(ctype, body) if body else None)
        raise errors.method_not_allowed()

    async def _node_proxy(self, method: str, res, name: str, route, query: dict) -> Result:
        """GET nodes/NAME/proxy/PATH: the node agent's PATH (its /metrics, /stats/summary, /healthz, ...) fetched
        with the API server's kubelet client certificate, as kube-apiserver proxies to kubelet."""
        if method != "GET":
            raise errors.method_not_allowed()
        ent = self.store.get(res.key(None, name))
        if ent is None:
            raise errors.not_found("nodes", "", name)
        if (ent.obj["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node"):
            raise StatusError(503, "ServiceUnavailable", f'no endpoints available for node "{name}": it is simulated')
        rest_path = getattr(route[-1], "rest", "")
        url = podstreams.agent_base(ent.obj) + "/" + rest_path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        import aiohttp
        try:
            async with self.node_client.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as r:
                chunks, size = [], 0
                async for chunk in r.content.iter_any():
                    size += len(chunk)
                    if size > NODE_PROXY_MAX:   # a follow or an endless answer: this proxy does not stream
                        raise StatusError(500, "InternalError", f"the node's answer is larger than {NODE_PROXY_MAX >> 20} MiB")
                    chunks.append(chunk)
                return Result(r.status, b"".join(chunks), r.headers.get("Content-Type", "text/plain"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise StatusError(503, "ServiceUnavailable", f'error trying to reach service: {e}') from None

    def _decode_body(self, ctype: str, body: bytes) -> Any:
        ct = ctype.split(";")[0].strip().lower()
        if not body:
            raise errors.bad_request("the body of the request is empty")
        if ct in ("", "application/json", "*/*"):
            try:
                return limits.load_json(body)
            except ValueError as e:   # limits.LimitError included
                raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}")
        if ct in ("application/yaml", "application/x-yaml", "text/yaml"):
            import yaml
            try:
                return limits.load_yaml(body)
            except (yaml.YAMLError, limits.LimitError) as e:
                raise errors.bad_request(f"error converting YAML to JSON: {e}")
        if ct == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(body)
            except protobuf.ProtobufError as e:
                raise errors.bad_request(f"unable to decode protobuf body: {e}")
        raise errors.unsupported_media_type(ct)

    def _virtual(self, kind: str, group: str, version: str, body: Any, user: User, ns: str | None = None) -> Result:
        out = dict(body) if isinstance(body, dict) else {}
        out["apiVersion"], out["kind"] = f"{group}/{version}", kind
        out.setdefault("metadata", {})["creationTimestamp"] = None
        spec = out.get("spec") or {}
        if kind == "SelfSubjectAccessReview":
            ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
            if ra:
                a = RequestAttributes(user.name, user.groups, ra.get("verb", ""), True, ra.get("group", ""), ra.get("resource", ""),
                                      ra.get("subresource", ""), ra.get("namespace", ""), ra.get("name", ""))
            elif nra:
                a = RequestAttributes(user.name, user.groups, nra.get("verb", ""), False, path=nra.get("path", ""))
            else:
                raise errors.invalid_object(kind, group, "", [errors.invalid("spec.resourceAttributes", None,
                                                                             "exactly one of nonResourceAttributes or resourceAttributes must be specified")])
            out["status"] = {"allowed": self.authorizer.authorize(a)}
        elif kind == "SelfSubjectRulesReview":
            if "system:masters" in user.groups:
                rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]
            else:
                rules = list(self.authorizer.rules_for(user.name, user.groups, spec.get("namespace", "")))
            out["status"] = {"resourceRules": [r for r in rules if not r.get("nonResourceURLs")],
                             "nonResourceRules": [r for r in rules if r.get("nonResourceURLs")], "incomplete": False}
        else:
            out["status"] = {"userInfo": user.info()}
        return Result(201, encode(out))

    # ------------------------------------------------------------------ pods/log
    async def _pod_log(self, res, ns: str, name: str, query: dict, send) -> None:
        ent = self.store.get(res.key(ns, name))
        if ent is None:
            raise errors.not_found(res.plural, res.group, name)
        pod = ent.obj
        node_name = (pod.get("spec") or {}).get("nodeName")
        node_ent = self.store.get(registry.BY_PATH[("", "v1", "nodes")].key(None, node_name)) if node_name else None
        url, _ = podlogs.location(pod, node_ent.obj if node_ent else None, query)
        await self.node_client.stream(url, send, parse_bool(query.get("follow", "")))

    # ------------------------------------------------------------------ watch
    async def _watch(self, ctx: Context, res: registry.Resource, receive, send) -> None:
        # parameters are checked before the stream starts: a bad one is a 400, not an aborted 200
        timeout = float(params.parse_int("timeoutSeconds", ctx.query.get("timeoutSeconds"))) or random.uniform(1800, 3600)
        params.check_list_options(ctx.query, watch=True)
        await self.rest.wait_for_revision(ctx.query.get("resourceVersion", ""))
        initial, watcher, (ls, fs) = self.rest.open_watch(ctx, res)
        if not isinstance(watcher, Compacted):
            self._watchers.add(watcher)
            if self.stopping:
                watcher.close()
        as_table = tables.wants_table(ctx.accept)
        ctype = tables.TABLE_CT if as_table else "application/json"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype.encode()), (b"cache-control", b"no-cache, private"),
                                (b"transfer-encoding", b"chunked")]})
        # an empty chunk: servers that hold the status line until the first body part send it now, so a
        # client sees the watch established before any event
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        if isinstance(watcher, Compacted):
            st = StatusError(410, "Expired", str(watcher)).status()
            await send({"type": "http.response.body", "body": encode({"type": "ERROR", "object": st}) + b"\n", "more_body": False})
            return
        convert = res.from_storage is not None and res.version != res.storage_version
        include = ctx.query.get("includeObject", "Metadata")
        first = [True]
        bookmarks = parse_bool(ctx.query.get("allowWatchBookmarks", ""))

        def frame(typ: str, e) -> bytes:
            """One watch event line for a stored Entry (parsed only for a table or a version conversion)."""
            if as_table:
                obj = e.obj
                t = tables.table(res, [obj], obj["metadata"].get("resourceVersion", ""), include, columns=first[0])
                first[0] = False
                return encode({"type": typ, "object": t}) + b"\n"
            if not convert:
                return b'{"type":"' + typ.encode() + b'","object":' + e.raw + b"}\n"
            return encode({"type": typ, "object": res.encode_out(e.obj)}) + b"\n"

        disconnected = asyncio.Event()

        async def wait_disconnect():
            while True:
                m = await receive()
                if m["type"] == "http.disconnect":
                    disconnected.set()
                    watcher.close()
                    return
        dtask = asyncio.get_running_loop().create_task(wait_disconnect())
        deadline = time.monotonic() + timeout
        try:
            out = b"".join(frame(t, e) for t, e in initial)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            while not disconnected.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                batch = await watcher.next_batch(min(remaining, self.bookmark_interval))
                if batch is None:
                    break
                if not batch:
                    if bookmarks and time.monotonic() < deadline:
                        bm = {"kind": res.kind.kind, "apiVersion": res.api_version,
                              "metadata": {"resourceVersion": str(self.store.revision)}}
                        await send({"type": "http.response.body", "body": encode({"type": "BOOKMARK", "object": bm}) + b"\n", "more_body": True})
                    continue
                chunk = b"".join(filter(None, (self._event_frame(ev, ls, fs, frame) for ev in batch)))
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            pass
        finally:
            watcher.close()
            self._watchers.discard(watcher)
            dtask.cancel()
        if not disconnected.is_set():
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass

    @staticmethod
    def _event_frame(ev, ls, fs, frame) -> bytes | None:
        if ls.empty() and fs.empty():
            return frame(ev.type, ev.entry)
        cur = ev.entry.obj
        cur_ok = ls.matches(cur.get("metadata", {}).get("labels")) and fs.matches(cur)
        if ev.type == "ADDED":
            return frame("ADDED", ev.entry) if cur_ok else None
        if ev.type == "DELETED":
            return frame("DELETED", ev.entry) if cur_ok else None
        prev = ev.prev.obj if ev.prev is not None else None
        prev_ok = prev is not None and ls.matches(prev.get("metadata", {}).get("labels")) and fs.matches(prev)
        if cur_ok and prev_ok:
            return frame("MODIFIED", ev.entry)
        if cur_ok:
            return frame("ADDED", ev.entry)
        if prev_ok:
            return frame("DELETED", ev.entry)
        return None
