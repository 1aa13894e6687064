"""pods/exec and pods/portforward over WebSocket: the request is checked as kube-apiserver's ExecLocation /
PortForwardLocation check it (the container, a node assigned), then relayed message for message to the node
agent's /exec or /portForward endpoint (kubelet's) over the API server's mutual-TLS connection to it. Client and agent speak
the same remote command protocol (kubeclass.api.remotecommand), so the API server only copies messages;
the subprotocol is the one the agent picked from those the client offered."""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote, unquote, urlencode

import aiohttp

from ..api import errors, remotecommand as rc
from ..api.errors import StatusError

log = logging.getLogger("kubeclass.server")


def _true(v: list[str] | None) -> bool:
    return bool(v) and v[-1].lower() in ("1", "true", "t", "yes")


def choose_container(pod: dict, container: str, list_ephemeral: bool = True) -> str:
    """The container a request names (any kind: regular, init, ephemeral), or the Pod's only one; StatusError 400
    as upstream words it (its log request does not list ephemeral containers in the message, exec and attach do)."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    name = md["name"]
    names = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    eph = [c["name"] for c in spec.get("ephemeralContainers") or []]
    if not container:
        if len(names) == 1:
            return names[0]
        msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        if init:
            msg += f" or one of the init containers: [{' '.join(init)}]"
        if eph and list_ephemeral:
            msg += f" or one of the ephemeral containers: [{' '.join(eph)}]"
        raise errors.bad_request(msg)
    if container not in names and container not in init and container not in eph:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def node_base(pod: dict, node: dict | None) -> str:
    """https://host:port of the node agent running pod."""
    name = pod["metadata"]["name"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    if node is None:
        raise errors.bad_request(f'nodes "{node_name}" not found')
    return agent_base(node, node_name)


def agent_base(node: dict, node_name: str | None = None) -> str:
    """https://host:port of a node's agent: its InternalIP (else ExternalIP, Hostname, name) and kubelet port."""
    node_name = node_name or (node.get("metadata") or {}).get("name", "")
    st = node.get("status") or {}
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    host = addrs.get("InternalIP") or addrs.get("ExternalIP") or addrs.get("Hostname") or node_name
    port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"https://{host}:{port}"


def exec_location(pod: dict, node: dict | None, query: dict[str, list[str]], sub: str = "exec") -> str:
    """The agent's URL for an exec or attach request (PodExecOptions / PodAttachOptions in the query)."""
    container = choose_container(pod, (query.get("container") or [""])[-1])
    params: list[tuple[str, str]] = [("command", c) for c in query.get("command") or []] if sub == "exec" else []
    for theirs, ours in (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")):
        if _true(query.get(theirs)):
            params.append((ours, "1"))
    md = pod["metadata"]
    return (f"{node_base(pod, node)}/{sub}/{quote(md['namespace'], safe='')}/{quote(md['name'], safe='')}/"
            f"{quote(container, safe='')}?{urlencode(params)}")


PORTFORWARD_PROTOCOLS = ("SPDY/3.1+portforward.k8s.io", rc.V4)


def portforward_protocols(header: str | None) -> list[str]:
    """The port-forward protocols a client offers that the agent speaks: kubectl's SPDY tunnel, the clients' v4
    channels."""
    out = []
    for p in (header or "").split(","):
        p = p.strip()
        if p in PORTFORWARD_PROTOCOLS and p not in out:
            out.append(p)
    return out


def portforward_location(pod: dict, node: dict | None, query: dict[str, list[str]]) -> str:
    """The agent's URL for a port-forward (PodPortForwardOptions' ports become kubelet's `port` parameters)."""
    ports = []
    for v in query.get("ports") or []:
        for p in v.split(","):
            p = p.strip()
            if not p:
                continue
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise errors.bad_request(f"invalid port: {p}")
            ports.append(("port", p))
    md = pod["metadata"]
    url = f"{node_base(pod, node)}/portForward/{quote(md['namespace'], safe='')}/{quote(md['name'], safe='')}"
    return url + (f"?{urlencode(ports)}" if ports else "")


async def relay(node_session: aiohttp.ClientSession, url: str, protocols: list[str], receive, send) -> None:
    """Connect to the agent, then accept the client's WebSocket with the agent's subprotocol and copy messages
    both ways until either side closes. The agent's refusal (a Status) becomes the client's."""
    try:
        upstream = await node_session.ws_connect(url, protocols=protocols or (rc.V1,), autoping=True, max_msg_size=4 << 20)
    except aiohttp.WSServerHandshakeError as e:
        raise StatusError(e.status if e.status in (400, 403, 404) else 500,
                          {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(e.status, "InternalError"),
                          _agent_message(e)) from None
    except (aiohttp.ClientError, OSError) as e:
        raise StatusError(500, "InternalError", f"error dialing backend: {e}") from None
    async with upstream:
        accept = {"type": "websocket.accept"}
        if upstream.protocol:
            accept["subprotocol"] = upstream.protocol
        await send(accept)

        async def to_node() -> None:
            while True:
                m = await receive()
                if m["type"] == "websocket.disconnect":
                    return
                if m["type"] == "websocket.receive":
                    if m.get("bytes") is not None:
                        await upstream.send_bytes(m["bytes"])
                    elif m.get("text") is not None:
                        await upstream.send_str(m["text"])

        async def to_client() -> None:
            async for msg in upstream:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await send({"type": "websocket.send", "bytes": msg.data})
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    await send({"type": "websocket.send", "text": msg.data})
                else:
                    break

        loop = asyncio.get_running_loop()
        tasks = {loop.create_task(to_node()), loop.create_task(to_client())}
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
        try:
            await send({"type": "websocket.close", "code": 1000})
        except Exception:   # noqa: BLE001 - the client is already gone
            pass


def _agent_message(e: aiohttp.WSServerHandshakeError) -> str:
    """The agent's Status message (repeated in a header: aiohttp drops a refused handshake's body)."""
    msg = (e.headers or {}).get("X-Kubeclass-Status-Message")
    return unquote(msg) if msg else f"the node answered {e.status}"
