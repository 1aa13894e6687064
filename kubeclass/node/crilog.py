"""Container logs in the CRI format, as conmon (CRI-O's monitor, which runs our containers) and containerd
write them for kubelet:

    2026-11-23T09:12:01.123456789+00:00 stdout F one full line
    2026-11-23T09:12:01.2+00:00 stderr P the first part of a longer line...

Reading them as kubelet does for `kubectl logs`: timestamps, sinceSeconds / sinceTime, tailLines,
limitBytes; a full record ends its line, a partial one (P) continues in the next record."""
from __future__ import annotations

import datetime
import re

_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def rfc3339nano(s: str) -> str:
    """A UTC time as kubelet prints it (Go's time.RFC3339Nano: trailing zeros of the fraction trimmed, `Z`)."""
    m = _TIME.fullmatch(s)
    if not m or m.group(3) not in ("Z", "+00:00", "-00:00"):
        return s
    frac = (m.group(2) or "").rstrip("0")
    return f"{m.group(1)}.{frac}Z" if frac else f"{m.group(1)}Z"


# ------------------------------------------------------------------ reading

class Record:
    __slots__ = ("time", "stream", "full", "content")

    def __init__(self, time_: str, stream: str, full: bool, content: bytes):
        self.time, self.stream, self.full, self.content = time_, stream, full, content


def parse(data: bytes) -> tuple[list[Record], int]:
    """Records of every complete line in data, and how many bytes they took (a last line still being
    written is left for later)."""
    records = []
    used = 0
    while True:
        nl = data.find(b"\n", used)
        if nl < 0:
            break
        line = data[used:nl]
        used = nl + 1
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        content = parts[3] if len(parts) == 4 else b""
        records.append(Record(parts[0].decode(), parts[1].decode(), parts[2] == b"F", content))
    return records, used


def parse_time(s: str) -> datetime.datetime | None:
    """RFC 3339 with up to nanoseconds (microseconds kept), as an aware datetime; None if malformed."""
    try:
        s = s.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        m = re.fullmatch(r"([^.]+)\.(\d+)(.*)", s)
        if m:
            s = f"{m.group(1)}.{(m.group(2) + '000000')[:6]}{m.group(3)}"
        t = datetime.datetime.fromisoformat(s)
        return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def render(records: list[Record], timestamps: bool, since: datetime.datetime | None = None,
           after_partial: bool = False) -> list[bytes]:
    """kubelet's output: each record's content, a newline after full ones; with timestamps the record's
    time before it unless it continues a partial one. Records older than `since` are skipped."""
    out: list[bytes] = []
    for r in records:
        if since is not None:
            t = parse_time(r.time)
            if t is not None and t < since:
                continue
        line = r.content + b"\n" if r.full else r.content
        if timestamps and not after_partial:
            line = rfc3339nano(r.time).encode() + b" " + line
        after_partial = not r.full
        out.append(line)
    return out


def tail(records: list[Record], n: int) -> list[Record]:
    """The last n lines of the file, as kubelet counts them (records, partial ones included)."""
    return records[-n:] if n > 0 else []


def last_line(log_path: str) -> str:
    try:
        with open(log_path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    lines = b"".join(render(parse(data)[0], False)).decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""

