"""The API server's Prometheus metrics, with kube-apiserver's names and labels: apiserver_request_total (verb,
dry_run, group, version, resource, subresource, scope, component, code), apiserver_request_duration_seconds (the
same less code, upstream's buckets), apiserver_current_inflight_requests (request_kind) and
apiserver_longrunning_requests (watches, logs, exec and port-forward streams open now). Served at /metrics,
authorized by RBAC as a non-resource URL (the system:monitoring ClusterRole)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..api import registry
from ..metricsexport import new_registry

BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)
LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
# non-resource paths reported by name; others as "other" (a client cannot grow the label set)
KNOWN_PATHS = {"/api", "/apis", "/version", "/openapi/v2", "/openapi/v3", "/healthz", "/livez", "/readyz", "/metrics", "/",
               "/.well-known/openid-configuration", "/openid/v1/jwks"}


def labels(method: str, path: str, route, query: dict, content_type: str) -> tuple[str, ...]:
    """RequestInfo as the metrics see it: the verb upper-cased as upstream reports it (LIST, WATCH, APPLY,
    DELETECOLLECTION, CONNECT for the streaming subresources) and the scope (resource, namespace, cluster)."""
    dry = "All" if query.get("dryRun") == "All" else ""
    if route is None or route[0] != "res":
        p = path.rstrip("/") or "/"
        return (method, dry, "", "", "", p if p in KNOWN_PATHS or p.startswith("/openapi/v3/") else "other", "", "apiserver")
    _, group, version, ns, plural, name, sub = route
    res = registry.BY_PATH.get((group, version, plural))
    if res is None and (group, version, plural) not in registry.COMPUTED and (group, version, plural) not in registry.VIRTUAL \
            or (sub and (res is None or sub not in res.subresources)):
        return (method, dry, "", "", "", "other", "", "apiserver")   # no such resource: a client cannot grow the label set
    watch = query.get("watch", "").lower() not in ("", "0", "false")
    if sub in ("exec", "attach", "portforward", "proxy"):
        verb = "CONNECT"
    elif method == "GET":
        verb = "WATCH" if watch else "GET" if name else "LIST"
    elif method == "DELETE":
        verb = "DELETE" if name else "DELETECOLLECTION"
    elif method == "PATCH" and content_type.startswith("application/apply-patch"):
        verb = "APPLY"
    else:
        verb = method
    if plural == "namespaces" and name and not ns:
        ns = name   # RequestInfo puts a Namespace object in its own namespace
    scope = "namespace" if ns else "resource" if name else "cluster"   # upstream's CleanScope order
    return (verb, dry, group, version, plural, sub or "", scope, "apiserver")


class APIServerMetrics:
    def __init__(self):
        self.registry = reg = new_registry()
        self.requests = Counter("apiserver_request_total", "Counter of apiserver requests broken out for each verb, dry run "
                                "value, group, version, resource, scope, component, and HTTP response code.",
                                LABELS + ("code",), registry=reg)
        self.duration = Histogram("apiserver_request_duration_seconds", "Response latency distribution in seconds for each "
                                  "verb, dry run value, group, version, resource, subresource, scope and component.",
                                  LABELS, buckets=BUCKETS, registry=reg)
        self.inflight = Gauge("apiserver_current_inflight_requests", "Number of requests being served now, by kind "
                              "(readOnly or mutating).", ("request_kind",), registry=reg)
        self.longrunning = Gauge("apiserver_longrunning_requests", "Gauge of all active long-running apiserver requests "
                                 "broken out by verb, group, version, resource, scope and component.",
                                 ("verb", "group", "version", "resource", "subresource", "scope", "component"), registry=reg)
        self._counters: dict = {}
        self._histograms: dict = {}
        self.ro = self.inflight.labels("readOnly")
        self.mut = self.inflight.labels("mutating")

    def observe(self, lbl: tuple[str, ...], code: int, seconds: float | None) -> None:
        c = self._counters.get((lbl, code))
        if c is None:   # the label lookup costs more than the increment: children are kept
            c = self._counters[(lbl, code)] = self.requests.labels(*lbl, str(code))
        c.inc()
        if seconds is not None:
            h = self._histograms.get(lbl)
            if h is None:
                h = self._histograms[lbl] = self.duration.labels(*lbl)
            h.observe(seconds)

    def long_running(self, lbl: tuple[str, ...]):
        return self.longrunning.labels(lbl[0], *lbl[2:])
