"""Bounds on what a request body may make the server build (pure logic): nesting depth, YAML alias
expansion, JSON patch operations and the growth `copy` operations cause. Each is checked before the
expensive step, without recursion (a deep document must not exhaust Python's stack either)."""
from __future__ import annotations

MAX_DEPTH = 128                  # objects deeper than this are refused (orjson itself stops at 254)
MAX_JSON_PATCH_OPS = 10_000      # upstream's maxJSONPatchOperations
COPY_LIMIT = 3 * 1024 * 1024     # upstream caps the growth of JSON patch `copy` at the request size limit
ALIAS_SLACK = 1_000              # YAML nodes beyond one per byte of the body: more means aliases expanding


class LimitError(ValueError):
    """A body that would make the server build too much."""


def check(obj, max_depth: int = MAX_DEPTH, max_nodes: int | None = None, what: str = "the object") -> int:
    """Walk obj (its expansion, when YAML aliases share parts of it) without recursion; the number of nodes.
    LimitError when it is nested deeper than max_depth or has more than max_nodes nodes."""
    nodes = 0
    stack = [(obj, 1)]
    while stack:
        v, depth = stack.pop()
        nodes += 1
        if max_nodes is not None and nodes > max_nodes:
            raise LimitError("yaml: document contains excessive aliasing")
        if isinstance(v, dict):
            if depth > max_depth:
                raise LimitError(f"{what} is nested more than {max_depth} levels deep")
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            if depth > max_depth:
                raise LimitError(f"{what} is nested more than {max_depth} levels deep")
            stack.extend((x, depth + 1) for x in v)
    return nodes


def check_yaml(obj, body_size: int) -> None:
    """A YAML document may not expand beyond about one node per byte of its text (aliases would)."""
    check(obj, max_nodes=body_size + ALIAS_SLACK)


def load_json(body: bytes):
    """A JSON body, refused (LimitError) when nested deeper than MAX_DEPTH; ValueError when not JSON."""
    import orjson
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e):
            raise LimitError(f"the object is nested more than {MAX_DEPTH} levels deep") from None
        raise ValueError(str(e)) from None
    check(obj)
    return obj


def load_yaml(body: bytes):
    """A YAML body (one document), refused (LimitError) before it is composed when nested deeper than MAX_DEPTH
    (PyYAML's C composer recurses: 100,000 levels crash the process) and after when aliases expand it
    beyond about a node per byte; yaml.YAMLError when not YAML."""
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = 0
    for ev in yaml.parse(body, Loader=loader):
        if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise LimitError(f"the object is nested more than {MAX_DEPTH} levels deep")
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    obj = yaml.load(body, Loader=loader)
    check_yaml(obj, len(body))
    return obj


def duplicate_fields(body: bytes) -> list[str]:
    """Paths of the keys a JSON body repeats inside one object (orjson keeps the last silently; upstream's strict
    decoder reports them: `duplicate field "metadata.name"`). Only for bodies load_json accepted (depth-checked).
    One more parse of the body (~20 us per KiB)."""
    import json

    repeated = object()   # key under which an object records the keys it repeats

    def hook(pairs):
        d: dict = {}
        for k, v in pairs:
            if k in d:
                d.setdefault(repeated, []).append(k)
            d[k] = v
        return d
    try:
        obj = json.loads(body, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return []
    paths: list[str] = []
    stack = [(obj, "")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, dict):
            paths += [f"{path}.{k}" if path else k for k in v.get(repeated, [])]
            stack += [(x, f"{path}.{k}" if path else k) for k, x in v.items() if k is not repeated]
        elif isinstance(v, list):
            stack += [(x, f"{path}[{i}]") for i, x in enumerate(v)]
    return sorted(paths)
