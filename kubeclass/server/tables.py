"""Server-side `meta.k8s.io/v1 Table` output for `kubectl get`."""
from __future__ import annotations

from ..api.registry import Resource

TABLE_CT = "application/json;as=Table;v=v1;g=meta.k8s.io"


def wants_table(accept: str) -> bool:
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=Table" in p and "g=meta.k8s.io" in p:
            return True
        if p.startswith("application/json") and "as=" not in p:
            return False
    return False


def _row_object(obj: dict, include: str, res: Resource) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return res.encode_out(obj)
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(res: Resource, objs: list[dict], rv: str, include: str = "Metadata", columns: bool = True,
          cont: str | None = None, remaining: int | None = None) -> dict:
    rows = [{"cells": res.kind.row(o), "object": _row_object(o, include, res)} for o in objs]
    for r in rows:
        if r["object"] is None:
            del r["object"]
    md: dict = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    if remaining:
        md["remainingItemCount"] = remaining
    t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "rows": rows}
    if columns:
        t["columnDefinitions"] = res.kind.columns
    return t
