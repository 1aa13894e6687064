"""CRI log format (as conmon writes it), read as kubelet does."""
from __future__ import annotations

import datetime

from kubeclass.node import crilog


def test_rfc3339nano_as_kubelet_prints_it():
    assert crilog.rfc3339nano("2023-11-14T22:13:20.120000000+00:00") == "2023-11-14T22:13:20.12Z"
    assert crilog.rfc3339nano("2023-11-14T22:13:20.000000000+00:00") == "2023-11-14T22:13:20Z"
    assert crilog.rfc3339nano("2023-11-14T22:13:20.5Z") == "2023-11-14T22:13:20.5Z"


def test_render_partial_full_timestamps_since_tail():
    data = (b"2026-01-01T00:00:01Z stdout F one\n"
            b"2026-01-01T00:00:02.5Z stderr P two-a\n"
            b"2026-01-01T00:00:02.6Z stderr F two-b\n"
            b"2026-01-01T00:00:03Z stdout P last\n"
            b"2026-01-01T00:00:04Z stdout F incompl")          # still being written: not a record yet
    records, used = crilog.parse(data)
    assert len(records) == 4 and used == data.rindex(b"\n") + 1
    assert b"".join(crilog.render(records, False)) == b"one\ntwo-atwo-b\nlast"
    assert b"".join(crilog.render(records, True)) == (b"2026-01-01T00:00:01Z one\n2026-01-01T00:00:02.5Z two-atwo-b\n"
                                                         b"2026-01-01T00:00:03Z last")
    since = datetime.datetime(2026, 1, 1, 0, 0, 2, tzinfo=datetime.timezone.utc)
    assert b"".join(crilog.render(records, False, since)) == b"two-atwo-b\nlast"
    assert b"".join(crilog.render(crilog.tail(records, 2), False)) == b"two-b\nlast"
    assert crilog.tail(records, 0) == []
