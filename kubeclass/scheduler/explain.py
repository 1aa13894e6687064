"""`kubeclass explain pod NAME`: why a Pod is (or would be) where it is. Beyond upstream, after
kube-scheduler-simulator: runs the scheduler's own framework against the cluster's current Nodes and Pods
(read through the API) and prints, for every node, each filter plugin's verdict and each score plugin's
weighted score; when the scheduler runs with --record-decisions, also what it recorded at its last attempt."""
from __future__ import annotations

import sys

import orjson

from ..client import ApiError, Client, Config, path_for
from .framework import FitError
from .nodeinfo import PodInfo, cluster_cache
from .scheduler import DECISION_ANNOTATION, Options, build_framework


def _fmt_requests(pi: PodInfo) -> str:
    parts = []
    for r, v in sorted(pi.requests.items()):
        if r == "cpu":
            parts.append(f"cpu={v}m")
        elif r == "memory":
            parts.append(f"memory={v // 1000 // (1024 * 1024)}Mi" if v % (1024 * 1024 * 1000) == 0 else f"memory={v // 1000}")
        else:
            parts.append(f"{r}={v // 1000 if v % 1000 == 0 else str(v) + 'm'}")
    return " ".join(parts) or "nothing"


def render(pod: dict, verdicts: dict, scores: dict, chosen: str | None, message: str, out) -> None:
    for node in sorted(verdicts):
        v = verdicts[node]
        failed = [(p, r) for p, r in v.items() if r != "passed"]
        if failed:
            p, r = failed[0]
            out.write(f"  {node}: does not fit: {p}: {r}\n")
        else:
            s = scores.get(node, {})
            detail = ", ".join(f"{k} {s[k]}" for k in s)
            mark = "  <- chosen" if node == chosen else ""
            out.write(f"  {node}: fits; filters passed: {', '.join(v)}; scores: {detail or '-'}; total {sum(s.values())}{mark}\n")
    if message:
        out.write(f"  result: {message}\n")
    elif chosen:
        out.write(f"  result: {chosen}\n")


async def explain(client: Client, namespace: str, name: str, out=sys.stdout) -> int:
    try:
        pod = await client.get(path_for("", "v1", "pods", namespace, name))
    except ApiError as e:
        print(f"Error from server ({e.reason or e.status}): {e.body.get('message', '')}", file=sys.stderr)
        return 1
    nodes = (await client.list("/api/v1/nodes"))["items"]
    pods = (await client.list("/api/v1/pods"))["items"]
    rcs = (await client.list("/apis/node.k8s.io/v1/runtimeclasses"))["items"]
    cache = cluster_cache(nodes, pods, pod["metadata"].get("uid"))
    handlers = {rc["metadata"]["name"]: rc.get("handler", "") for rc in rcs}
    fw = build_framework(handlers, Options())
    unbound = orjson.loads(orjson.dumps(pod))
    unbound["spec"].pop("nodeName", None)   # explain the placement as if it were being decided now
    pi = PodInfo.of(unbound)
    spec = pod.get("spec") or {}
    out.write(f"Pod {namespace}/{name}: runtimeClassName {spec.get('runtimeClassName') or '<none>'}"
              f" (handler {handlers.get(spec.get('runtimeClassName'), '-') if spec.get('runtimeClassName') else 'default'}),"
              f" requests {_fmt_requests(pi)} (overhead included), node {spec.get('nodeName') or '<none>'}\n")
    recorded = (pod["metadata"].get("annotations") or {}).get(DECISION_ANNOTATION)
    if recorded:
        d = orjson.loads(recorded)
        out.write("Recorded by the scheduler at its last attempt:\n")
        render(pod, d.get("verdicts") or {}, d.get("scores") or {}, d.get("node"), d.get("message", ""), out)
    out.write(f"Against the cluster now ({len(nodes)} nodes):\n")
    try:
        _, result = fw.schedule(cache, pi, explain=True)
        render(pod, result.verdicts, result.scores, result.node, "", out)
    except FitError as e:
        render(pod, getattr(e, "verdicts", {}), {}, None, e.message(), out)
    return 0


async def main(args) -> int:
    client = Client(Config.from_kubeconfig(args.kubeconfig), user_agent="kubeclass-explain")
    try:
        return await explain(client, args.namespace, args.name)
    finally:
        await client.close()


