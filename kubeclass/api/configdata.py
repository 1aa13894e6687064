"""Secret and ConfigMap: stringData folded into data, base64 checks, validation with upstream 1.32's
messages (config keys, the 1 MiB limit, per-type required keys, immutability) and kubectl's columns."""
from __future__ import annotations

import base64
import binascii
import re

import orjson

from . import errors, meta, names
from .errors import FieldError, forbidden, invalid, required, too_long

MAX_SIZE = 1024 * 1024  # core.MaxSecretSize, also the ConfigMap limit
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_config_key_re = re.compile("^" + CONFIG_KEY_FMT + "$")
CONFIG_KEY_MSG = names._regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                    CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name")
REDACTED = "<secret contents redacted>"
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/=\r\n]")   # Go skips newlines
_NEWLINES = re.compile(rb"[\r\n]")


def config_key(value: str) -> list[str]:
    """validation.IsConfigMapKey."""
    errs = []
    if len(value) > 253:
        errs.append(names.max_len_error(253))
    if not _config_key_re.match(value):
        errs.append(CONFIG_KEY_MSG)
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def b64_error(value: str) -> str | None:
    """Go's base64.StdEncoding error for a []byte field, or None when the value decodes."""
    raw = value.encode()
    bad = _NOT_B64.search(raw)
    if bad:
        return f"illegal base64 data at input byte {bad.start()}"
    try:
        base64.b64decode(_NEWLINES.sub(b"", raw), validate=True)
    except (binascii.Error, ValueError):
        return f"illegal base64 data at input byte {max(len(raw) - 1, 0) // 4 * 4}"
    return None


def decoded_len(value: str) -> int:
    """Bytes a base64 value (already checked by b64_error) decodes to, without decoding it."""
    s = value.replace("\n", "").replace("\r", "")
    return len(s) * 3 // 4 - (len(s) - len(s.rstrip("=")))


def decoded(value: str) -> bytes:
    return base64.b64decode(value.replace("\n", "").replace("\r", ""))


# ------------------------------------------------------------------ Secret

def secret_defaults(s: dict) -> None:
    """v1 → internal conversion: stringData overwrites data keys (base64-encoded), then is dropped; type
    defaults to Opaque. Raises 400 for data values that are not base64, as the JSON decoder does."""
    for key, value in (s.get("data") or {}).items():
        if not isinstance(value, str):
            continue
        err = b64_error(value)
        if err:
            raise errors.bad_request(f'Secret in version "v1" cannot be handled as a Secret: {err}')
    string_data = s.pop("stringData", None) or {}
    if string_data:
        data = s.get("data") or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        s["data"] = data
    if not s.get("type"):
        s["type"] = "Opaque"


def secret_validate(s: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(s.get("metadata", {}), True, names.dns1123_subdomain)
    data = s.get("data") or {}
    total = 0
    for key, value in data.items():
        errs += [invalid(f"data[{key}]", key, m) for m in config_key(key)]
        total += decoded_len(value) if isinstance(value, str) else 0
    if total > MAX_SIZE:
        errs.append(too_long("data", MAX_SIZE))
    typ = s.get("type") or "Opaque"
    if typ == "kubernetes.io/service-account-token":
        if not (s.get("metadata", {}).get("annotations") or {}).get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif typ in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if typ == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            errs.append(required(f"data[{key}]"))
        else:
            why = _json_object_error(decoded(data[key]))
            if why:
                errs.append(invalid(f"data[{key}]", REDACTED, why))
    elif typ == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            # upstream builds these paths with a literal "data[%s]" path element
            errs += [required("data[%s][username]"), required("data[%s][password]")]
    elif typ == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(required("data[%s][ssh-privatekey]"))
    elif typ == "kubernetes.io/tls":
        errs += [required(f"data[{k}]") for k in ("tls.crt", "tls.key") if k not in data]
    return errs


def _json_object_error(raw: bytes) -> str | None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return f"invalid JSON: {e}"
    if not isinstance(doc, dict):
        return f"json: cannot unmarshal {_go_json_type(doc)} into Go value of type map[string]interface {{}}"
    return None


def _go_json_type(v) -> str:
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if v is None:
        return "null"
    return "number"


def secret_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errs.append(invalid("type", new.get("type"), "field is immutable"))
    errs += _immutable_errors(new, old, ("data",))
    return errs + secret_validate(new)


def _immutable_errors(new: dict, old: dict, fields: tuple[str, ...]) -> list[FieldError]:
    if not old.get("immutable"):
        return []
    errs = []
    if not new.get("immutable"):
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for f in fields:
        if (new.get(f) or {}) != (old.get(f) or {}):
            errs.append(forbidden(f, "field is immutable when `immutable` is set"))
    return errs


def secret_row(s: dict) -> list:
    return [s["metadata"]["name"], s.get("type") or "Opaque", len(s.get("data") or {}),
            meta.age(s["metadata"].get("creationTimestamp"))]


# ------------------------------------------------------------------ ConfigMap

def configmap_defaults(c: dict) -> None:
    for key, value in (c.get("binaryData") or {}).items():
        if isinstance(value, str):
            err = b64_error(value)
            if err:
                raise errors.bad_request(f'ConfigMap in version "v1" cannot be handled as a ConfigMap: {err}')


def configmap_validate(c: dict) -> list[FieldError]:
    errs = meta.validate_object_meta(c.get("metadata", {}), True, names.dns1123_subdomain)
    data, binary = c.get("data") or {}, c.get("binaryData") or {}
    total = 0
    for key, value in data.items():
        errs += [invalid(f"data[{key}]", key, m) for m in config_key(key)]
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += len(str(value).encode())
    for key, value in binary.items():
        errs += [invalid(f"binaryData[{key}]", key, m) for m in config_key(key)]
        if key in data:
            errs.append(invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
        total += decoded_len(value) if isinstance(value, str) else 0
    if total > MAX_SIZE:
        errs.append(too_long("", MAX_SIZE))
    return errs


def configmap_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = meta.validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    errs += _immutable_errors(new, old, ("data", "binaryData"))
    return errs + configmap_validate(new)


def configmap_row(c: dict) -> list:
    return [c["metadata"]["name"], len(c.get("data") or {}) + len(c.get("binaryData") or {}),
            meta.age(c["metadata"].get("creationTimestamp"))]
