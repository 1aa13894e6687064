"""Query parameters and option bodies parsed as upstream parses them (strconv, strict JSON types), so that a
malformed value is a 400 naming it, never a Python exception (pure logic)."""
from __future__ import annotations

import re

from . import errors, schema
from .errors import go_quote

_INT = re.compile(r"[+-]?[0-9]+")   # ASCII digits only: Python's int() also takes "1_000", " 1", full-width digits
INT64 = (-(1 << 63), (1 << 63) - 1)


def parse_int(name: str, value: str | None, default: int = 0) -> int:
    """strconv.ParseInt(value, 10, 64), or 400 naming the parameter."""
    if value is None or value == "":
        return default
    if not _INT.fullmatch(value):
        raise errors.bad_request(f"invalid value for {name}: strconv.ParseInt: parsing {go_quote(value)}: invalid syntax")
    n = int(value)
    if not INT64[0] <= n <= INT64[1]:
        raise errors.bad_request(f"invalid value for {name}: strconv.ParseInt: parsing {go_quote(value)}: value out of range")
    return n


DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"


def delete_options(body) -> dict:
    """A DeleteOptions body (or {}), its fields of the types upstream decodes them to."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise errors.bad_request("the body of a delete request must be a DeleteOptions object")
    try:
        opts, _ = schema.decode(dict(body), DELETE_OPTIONS, "DeleteOptions")
    except schema.DecodeError as e:
        raise errors.bad_request(str(e))
    return opts


def check_list_options(query: dict, watch: bool) -> None:
    """ValidateListOptions (metainternalversion validation): resourceVersionMatch and sendInitialEvents, as a
    422 on ListOptions."""
    match, rv = query.get("resourceVersionMatch", ""), query.get("resourceVersion", "")
    initial = query.get("sendInitialEvents")
    errs = []
    if watch:
        if initial is not None:
            if match != "NotOlderThan":
                errs.append(errors.forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
            errs.append(errors.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"))
        if match:
            if initial is None:
                errs.append(errors.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
            if match != "NotOlderThan":
                errs.append(errors.not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
            if query.get("continue"):
                errs.append(errors.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"))
    else:
        if match:
            if not rv:
                errs.append(errors.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"))
            if query.get("continue"):
                errs.append(errors.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"))
            if match not in ("Exact", "NotOlderThan"):
                errs.append(errors.not_supported("resourceVersionMatch", match, ["Exact", "NotOlderThan", ""]))
            if match == "Exact" and rv == "0":
                errs.append(errors.forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
        if initial is not None:
            errs.append(errors.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if errs:
        raise errors.invalid_object("ListOptions", "meta.k8s.io", "", errs)


def parse_bool(v: str) -> bool:
    """strconv.ParseBool, which clients rely on (watch=true|1|True|t)."""
    return v in ("1", "t", "T", "TRUE", "true", "True")


def pretty(query: dict, user_agent: str) -> bool:
    """Whether kube-apiserver indents its JSON answer: `?pretty=` parsed as strconv.ParseBool when given, else
    for user agents that start with curl, Wget or Mozilla/5.0 (apimachinery's isPrettyPrint)."""
    if query.get("pretty"):
        return parse_bool(query["pretty"])
    return user_agent.startswith(("curl", "Wget", "Mozilla/5.0"))
