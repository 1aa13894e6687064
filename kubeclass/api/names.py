"""Name, label and annotation validation with apimachinery's exact messages. The checks of a single name
are memoized (the same names, label keys and resource names recur in every object) and return tuples."""
from __future__ import annotations

import functools
import re

from .errors import FieldError, invalid, too_long

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"

DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_label_re = re.compile("^" + DNS1123_LABEL_FMT + "$")
_label1035_re = re.compile("^" + DNS1035_LABEL_FMT + "$")
_subdomain_re = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_qualified_re = re.compile("^" + QUALIFIED_NAME_FMT + "$")
_label_value_re = re.compile("^" + LABEL_VALUE_FMT + "$")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # apimachinery's RegexError joins examples with ", or " after quoting; the first is "e.g. 'x'",
    # later ones are " or 'y'" joined by "," -- which yields the famous double space.
    s = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            s += " or "
        s += "'" + ex + "'"
        if i < len(examples) - 1:
            s += ", "
    s += ", regex used for validation is '" + fmt + "')"
    return s


LABEL_MSG = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
    DNS1123_LABEL_FMT, "my-name", "123-abc")
LABEL1035_MSG = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
    DNS1035_LABEL_FMT, "my-name", "abc-123")
SUBDOMAIN_MSG = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    DNS1123_SUBDOMAIN_FMT, "example.com")
QUALIFIED_NAME_MSG = _regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
LABEL_VALUE_MSG = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    LABEL_VALUE_FMT, "MyValue", "my_value", "12345")


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def _memoized(check):
    """A check of one name, memoized; callers get its messages as a tuple (shared between them)."""
    @functools.lru_cache(maxsize=16384)
    @functools.wraps(check)
    def memo(value: str) -> tuple[str, ...]:
        return tuple(check(value))
    return memo


@_memoized
def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _label_re.match(value):
        if _subdomain_re.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(LABEL_MSG)
    return errs


@_memoized
def dns1035_label(value: str) -> list[str]:
    """IsDNS1035Label: Service names."""
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _label1035_re.match(value):
        errs.append(LABEL1035_MSG)
    return errs


@_memoized
def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _subdomain_re.match(value):
        errs.append(SUBDOMAIN_MSG)
    return errs


def path_segment_name(value: str) -> list[str]:
    """ValidatePathSegmentName: used by RBAC objects, whose names may contain ':'."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


@_memoized
def qualified_name(value: str) -> list[str]:
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + QUALIFIED_NAME_MSG + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if name and not _qualified_re.match(name):
        errs.append("name part " + QUALIFIED_NAME_MSG)
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _label_value_re.match(value):
        errs.append(LABEL_VALUE_MSG)
    return errs


def validate_labels(labels: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for k, v in labels.items():
        for m in qualified_name(k):
            errs.append(invalid(path, k, m))
        if not isinstance(v, str):
            errs.append(invalid(path, v, "must be a string"))
            continue
        for m in label_value(v):
            errs.append(invalid(path, v, m))
    return errs


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_annotations(annotations: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for k, v in annotations.items():
        for m in qualified_name(k.lower()):
            errs.append(invalid(path, k, m))
        total += len(k) + len(v if isinstance(v, str) else str(v))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def is_label(value: str) -> bool:
    return not dns1123_label(value)
