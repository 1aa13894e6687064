"""pods/log: validate the request as kube-apiserver's LogLocation does (container name, a node assigned),
then stream the node agent's /containerLogs/{namespace}/{pod}/{container} back to the client. The API
server calls the agent over TLS with its own client certificate (CN kube-apiserver-kubelet-client, signed
by the cluster CA), which the agent verifies, as kubelet verifies kube-apiserver's; like kube-apiserver by
default, it does not verify the agent's self-signed serving certificate."""
from __future__ import annotations

import ssl
from urllib.parse import quote, urlencode

import aiohttp

from ..api import errors, params
from . import podstreams

LOG_PARAMS = ("follow", "previous", "tailLines", "limitBytes", "timestamps", "sinceSeconds", "sinceTime")


def location(pod: dict, node: dict | None, query: dict[str, str]) -> tuple[str, str]:
    """(agent URL, container) for a log request. Raises StatusError as upstream words it."""
    md = pod["metadata"]
    name = md["name"]
    container = podstreams.choose_container(pod, query.get("container", ""), list_ephemeral=False)
    for p in ("tailLines", "limitBytes", "sinceSeconds"):
        v = query.get(p)
        n = params.parse_int(p, v) if v is not None else None
        if n is not None and ((p != "tailLines" and n < 1) or n < 0):
            raise errors.bad_request(f'PodLogOptions "{name}" is invalid: {p}: Invalid value: {v}: must be greater than '
                                     f'{"or equal to 0" if p == "tailLines" else "0"}')
    base = podstreams.node_base(pod, node)
    forwarded = {k: query[k] for k in LOG_PARAMS if k in query}
    url = f"{base}/containerLogs/{quote(md['namespace'])}/{quote(name)}/{quote(container)}"
    if forwarded:
        url += "?" + urlencode(forwarded)
    return url, container


class NodeClient:
    """The API server's connection to node agents."""

    def __init__(self, cert: str | None, key: str | None):
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        if cert and key:
            self.ctx.load_cert_chain(cert, key)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ctx),
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def stream(self, url: str, send, follow: bool) -> None:
        """Proxy the agent's answer: its bytes on success, its error as a Status."""
        try:
            resp = await self.session.get(url)
        except aiohttp.ClientError as e:
            raise errors.StatusError(500, "InternalError", f"Get \"{url}\": {e}") from e
        async with resp:
            if resp.status != 200:
                body = await resp.read()
                try:
                    import orjson
                    msg = orjson.loads(body).get("message", "")
                except ValueError:
                    msg = body.decode(errors="replace").strip()
                raise errors.StatusError(resp.status, {400: "BadRequest", 404: "NotFound", 403: "Forbidden"}.get(resp.status, "InternalError"),
                                         msg or f"the node answered {resp.status}")
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private")]
                        + ([(b"transfer-encoding", b"chunked")] if follow else [])})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
