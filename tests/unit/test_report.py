"""The report's figures as plain Python over the rows its query returns."""

from __future__ import annotations

from datetime import datetime, timezone

from taskjobs.report import build_report


class Rows:
    """A store that answers the report's query with given rows (the figures are plain Python
    over them)."""

    def __init__(self, **rows: object) -> None:
        self.rows = {
            "by_name_and_status": [], "by_worker_and_status": [], "running_by_worker": [],
            "worker_last_seen": [], "exceptions": [], "runtime": {}, "queue_wait": {},
            "oldest_pending": None, "slow": [], "timeline": [], **rows,
        }  # fmt: skip

    def report_rows(self, **_: object) -> dict[str, object]:
        return self.rows


def test_equally_frequent_errors_are_listed_by_name_whatever_the_database_order() -> None:
    rows = Rows(exceptions=[("ZeroDivisionError", 2), ("KeyError", 2), ("OSError", 5)])
    report = build_report(store=rows)  # type: ignore[arg-type]
    assert report.exceptions == [("OSError", 5), ("KeyError", 2), ("ZeroDivisionError", 2)]


def test_a_workers_last_seen_is_its_heartbeat_and_none_without_one() -> None:
    beat = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    rows = Rows(
        by_worker_and_status=[("celery@beats", "finished", 3), ("celery@silent", "error", 1)],
        running_by_worker=[("celery@beats", 1), (None, 2)],
        worker_last_seen=[("celery@beats", beat)],
    )
    report = build_report(store=rows)  # type: ignore[arg-type]
    assert [(w.worker, w.running, w.processed, w.failed, w.last_seen) for w in report.workers] == [
        ("celery@beats", 1, 3, 0, beat),
        ("celery@silent", 0, 1, 1, None),
    ]
