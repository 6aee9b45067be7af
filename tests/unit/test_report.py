"""The report's figures as plain Python over the rows its query returns."""

from __future__ import annotations

from taskjobs.report import build_report


class Rows:
    """A store that answers the report's query with given rows (the figures are plain Python
    over them)."""

    def __init__(self, **rows: object) -> None:
        self.rows = {
            "by_name_and_status": [], "by_worker_and_status": [], "running_by_worker": [],
            "worker_last_seen": [], "exceptions": [], "runtime": {}, "queue_wait": {},
            "oldest_pending": None, "slow": [], **rows,
        }  # fmt: skip

    def report_rows(self, **_: object) -> dict[str, object]:
        return self.rows


def test_equally_frequent_errors_are_listed_by_name_whatever_the_database_order() -> None:
    rows = Rows(exceptions=[("ZeroDivisionError", 2), ("KeyError", 2), ("OSError", 5)])
    report = build_report(store=rows)  # type: ignore[arg-type]
    assert report.exceptions == [("OSError", 5), ("KeyError", 2), ("ZeroDivisionError", 2)]
