"""Field errors and API status errors, rendered as upstream's apimachinery renders them.

Field errors: `<path>: <Type>: <value>: <detail>` (value omitted for Required/Forbidden/TooLong/Internal).
Status errors become a `Status` object on the wire; `message` reads as kube-apiserver's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

REQUIRED = "Required value"
INVALID = "Invalid value"
DUPLICATE = "Duplicate value"
NOT_SUPPORTED = "Unsupported value"
FORBIDDEN = "Forbidden"
TOO_LONG = "Too long"
TOO_MANY = "Too many"
NOT_FOUND = "Not found"
INTERNAL = "Internal error"

_CAUSE_REASON = {
    REQUIRED: "FieldValueRequired",
    INVALID: "FieldValueInvalid",
    DUPLICATE: "FieldValueDuplicate",
    NOT_SUPPORTED: "FieldValueNotSupported",
    FORBIDDEN: "FieldValueForbidden",
    TOO_LONG: "FieldValueTooLong",
    TOO_MANY: "FieldValueTooMany",
    NOT_FOUND: "FieldValueNotFound",
    INTERNAL: "InternalError",
}
_OMIT_VALUE = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL}


class GoRepr:
    """A value that prints verbatim (Go's %s / %#v output computed by the caller)."""

    def __init__(self, text: str):
        self.text = text


def go_value(v: Any) -> str:
    """Render a value as Go's field.Error does (%q for strings, %v for numbers, null for nil)."""
    if isinstance(v, GoRepr):
        return v.text
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, dict):
        inner = ", ".join(f"{go_quote(str(k))}:{go_quote(str(x))}" for k, x in sorted(v.items()))
        return "map[string]string{" + inner + "}"
    return go_quote(str(v))


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


@dataclass
class FieldError:
    type: str
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        s = self.type
        if self.type not in _OMIT_VALUE:
            s += ": " + go_value(self.value)
        if self.detail:
            s += ": " + self.detail
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        return {"reason": _CAUSE_REASON[self.type], "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, path, None, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, path, None, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(go_quote(s) for s in supported)
    return FieldError(NOT_SUPPORTED, path, value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, path, value)


def too_long(path: str, max_len: int) -> FieldError:
    return FieldError(TOO_LONG, path, None, f"must have at most {max_len} bytes")


def aggregate(errors: list[FieldError]) -> str:
    """ErrorList.ToAggregate().Error(): duplicates dropped, one renders alone, several as [a, b]."""
    msgs: list[str] = []
    for e in errors:
        m = str(e)
        if m not in msgs:
            msgs.append(m)
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"


@dataclass
class StatusError(Exception):
    code: int
    reason: str
    message: str
    details: dict | None = None
    extra_headers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict:
        st = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            st["details"] = self.details
        return st


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource})


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                       _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                       _details(name, group, resource))


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def invalid_object(kind: str, group: str, name: str, errors: list[FieldError]) -> StatusError:
    qual = f"{kind}.{group}" if group else kind
    return StatusError(422, "Invalid", f'{qual} "{name}" is invalid: {aggregate(errors)}',
                       {**_details(name, group, kind), "causes": [e.cause() for e in errors]})


def forbidden_status(resource: str, group: str, name: str, msg: str) -> StatusError:
    q = _qualified(resource, group)
    text = f'{q} "{name}" is forbidden: {msg}' if name else f"{q} is forbidden: {msg}"
    return StatusError(403, "Forbidden", text, _details(name, group, resource))


def bad_request(msg: str) -> StatusError:
    return StatusError(400, "BadRequest", msg)


def method_not_allowed(msg: str = "the server does not allow this method on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", msg)


def unsupported_media_type(ctype: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got "{ctype}")')


def too_large(limit: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def too_large_msg(msg: str) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: {msg}")


def gone(msg: str) -> StatusError:
    return StatusError(410, "Expired", msg)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def path_not_found() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource")


def internal(msg: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {msg}")


def _details(name: str, group: str, kind: str) -> dict:
    """metav1.StatusDetails: name, group and kind are omitempty (a create refused before it has a name has none)."""
    d: dict = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if kind:
        d["kind"] = kind
    return d
