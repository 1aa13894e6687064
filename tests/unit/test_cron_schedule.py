"""CronJob schedule arithmetic (kubeclass/api/cronjobs.py): cron syntax and macros, time zones, missed
times, Job names, and upstream's validation texts."""
from __future__ import annotations

import datetime

from kubeclass.api import cronjobs

UTC = datetime.timezone.utc


def t(h, m, d=1):
    return datetime.datetime(2026, 3, d, h, m, tzinfo=UTC)


def test_times_between_and_next():
    assert cronjobs.times_between("*/15 * * * *", None, t(10, 1), t(10, 50)) == [t(10, 15), t(10, 30), t(10, 45)]
    assert cronjobs.times_between("@hourly", None, t(10, 0), t(12, 0)) == [t(11, 0), t(12, 0)]
    assert cronjobs.next_time("0 9 * * *", None, t(10, 0)) == t(9, 0, 2)
    # 09:00 in New York is 14:00 UTC in March 2026 before DST (Mar 8) and 13:00 after
    assert cronjobs.next_time("0 9 * * *", "America/New_York", t(0, 0, 2)) == t(14, 0, 2)
    assert cronjobs.next_time("0 9 * * *", "America/New_York", t(0, 0, 10)) == t(13, 0, 10)


def test_missed_times_keep_the_latest():
    got = cronjobs.times_between("* * * * *", None, t(0, 0), t(5, 0), limit=3)
    assert got[-1] == t(5, 0) and len(got) == 3


def test_job_name_is_minutes_since_epoch():
    assert cronjobs.job_name("backup", datetime.datetime(2026, 1, 1, tzinfo=UTC)) == "backup-29453760"   # 1767225600 s / 60


def test_schedule_errors():
    assert cronjobs.schedule_error("bad") == "expected exactly 5 fields, found 1: [bad]"
    assert cronjobs.schedule_error("0 0 * * * *") == "expected exactly 5 fields, found 6: [0 0 * * * *]"
    assert cronjobs.schedule_error("@fortnightly") == "unrecognized descriptor: @fortnightly"
    assert cronjobs.schedule_error("61 * * * *")
    assert cronjobs.schedule_error("@daily") is None and cronjobs.schedule_error("5 4 * * sun") is None


def test_validation_texts():
    cj = {"metadata": {"name": "x" * 53, "namespace": "d"},
          "spec": {"schedule": "TZ=UTC 0 * * * *", "timeZone": "Mars/Olympus", "concurrencyPolicy": "Sometimes",
                   "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}}}
    msgs = [e.body() if hasattr(e, "body") else str(e) for e in cronjobs.validate(cj)]
    text = "\n".join(f"{e.field}: {m}" for e, m in zip(cronjobs.validate(cj), msgs))
    assert "metadata.name: Invalid value" in text and "must be no more than 52 characters" in text
    assert "cannot use TZ or CRON_TZ in schedule, use timeZone field instead" in text
    assert 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus' in text
    assert 'spec.concurrencyPolicy: Unsupported value: "Sometimes"' in text
    assert 'spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"' in text
