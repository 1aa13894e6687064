"""The cluster view in the browser (`/ui` on the API server): nodes x runtime handlers (available or not, and why),
RuntimeClasses with declared and measured overhead, Pods grouped by class and node with their phase, and for a
Pending Pod the scheduler's verdict on every node (what `kubeclass explain pod` prints).

Server-rendered shell plus a little JavaScript, no framework: the page (/ui, /ui/app.js, /ui/app.css) holds no
cluster data and is served to anyone, like /healthz; everything it shows comes from API requests the browser makes
with the token typed into its login form (kept in the tab's sessionStorage), so RBAC decides what each user sees,
and it stays current through watches (fetch streams of ?watch=1). The one endpoint of its own, /ui/explain, is
authorized as `get pods` in the Pod's namespace."""
from __future__ import annotations

import functools
import os

HERE = os.path.dirname(__file__)
FILES = {"/ui": ("page.html", "text/html; charset=utf-8"), "/ui/": ("page.html", "text/html; charset=utf-8"),
         "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"), "/ui/app.css": ("app.css", "text/css; charset=utf-8")}
# no inline script, no framing, no sniffing; API calls go to this origin only
HEADERS = [(b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            b"img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"),
           (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


@functools.lru_cache(maxsize=8)
def asset(path: str) -> tuple[bytes, str] | None:
    f = FILES.get(path)
    if f is None:
        return None
    with open(os.path.join(HERE, f[0]), "rb") as fh:
        return fh.read(), f[1]
