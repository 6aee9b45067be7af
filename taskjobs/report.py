"""The status report: what is pending, running where, failing and why, how long tasks wait and
run. One typed structure, the single source for the CLI, ``--json`` and later the web page."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from taskjobs.config import current_store
from taskjobs.model import ERROR, FINISHED, STATES, Job, bucket_seconds, jsonable, utcnow
from taskjobs.store import JobReader
from taskjobs.store.stats import to_minutes

# The report's default window: the last day.
DEFAULT_WINDOW = timedelta(hours=24)
# A running job older than this is listed as running long.
DEFAULT_SLOW_AFTER = timedelta(minutes=10)
# At most this many long-running jobs are listed.
SLOW_LIMIT = 20


@dataclasses.dataclass(frozen=True)
class TaskStats:
    """Figures for one task name over the window; durations in seconds, each the nearest-rank
    value read from a histogram: the bound of its bin, less than 10% above the exact value
    (see ``taskjobs.store.stats``)."""

    name: str
    counts: dict[str, int]
    # Errors among ended jobs (finished + error); None when none ended.
    failure_rate: float | None
    runtime_p50: float | None
    runtime_p95: float | None
    runtime_max: float | None
    wait_p50: float | None
    wait_p95: float | None
    # Jobs finished per minute of the window.
    throughput_per_minute: float


@dataclasses.dataclass(frozen=True)
class WorkerStats:
    """One worker: jobs running on it now, and what it did in the window."""

    worker: str
    running: int
    processed: int
    failed: int
    # Its last heartbeat; None for a worker that never sent one (seen only in jobs).
    last_seen: datetime | None


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The jobs that ended (finished or error) in one stretch of the window, whenever they were
    created: unlike the other figures, the timeline follows the jobs' ends."""

    start: datetime
    finished: int
    failed: int


@dataclasses.dataclass(frozen=True)
class Report:
    """The status report over jobs created in [since, until), a window of whole minutes (the
    timeline: over the jobs that ended in it)."""

    since: datetime
    until: datetime
    totals: dict[str, int]
    tasks: list[TaskStats]
    workers: list[WorkerStats]
    # Seconds the oldest pending job (of any time) has waited; None when none is pending.
    oldest_pending_age: float | None
    slow_after: float
    long_running: list[Job]
    # (exception type, count), most frequent first.
    exceptions: list[tuple[str, int]]
    # The window cut in equal stretches (whole minutes), oldest first: what ended in each.
    timeline: list[Bucket]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: datetimes as ISO 8601 strings."""
        data: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return data


def build_report(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    slow_after: timedelta = DEFAULT_SLOW_AFTER,
    store: JobReader | None = None,
) -> Report:
    """Build the report from the store (default: the configured one), over the jobs created in
    [since, until) (by default the last day), both taken to the minute: the start down, the end
    up (the figures are kept per minute, see ``taskjobs.store.stats``).

    Its workers are those that ran jobs of the window or run jobs now, each with its last
    heartbeat.
    """
    now = utcnow()
    until = until or now
    since, until = to_minutes(since or until - DEFAULT_WINDOW, until)
    rows = (store or current_store()).report_rows(
        since=since, until=until, slow_before=now - slow_after, slow_limit=SLOW_LIMIT
    )
    minutes = max((until - since).total_seconds() / 60, 1 / 60)

    by_name: dict[str, dict[str, int]] = defaultdict(dict)
    totals = dict.fromkeys(STATES, 0)
    for name, status, count in rows["by_name_and_status"]:
        by_name[name or ""][status] = count
        totals[status] = totals.get(status, 0) + count
    tasks = [
        _task_stats(
            name, counts, rows["runtime"].get(name, {}), rows["queue_wait"].get(name, {}), minutes
        )
        for name, counts in sorted(by_name.items())
    ]

    per_worker: dict[str, dict[str, int]] = defaultdict(dict)
    for worker, status, count in rows["by_worker_and_status"]:
        per_worker[worker][status] = count
    running = {worker: count for worker, count in rows["running_by_worker"] if worker}
    last_seen = dict(rows["worker_last_seen"])
    workers = [
        WorkerStats(
            worker=worker,
            running=running.get(worker, 0),
            processed=per_worker[worker].get(FINISHED, 0) + per_worker[worker].get(ERROR, 0),
            failed=per_worker[worker].get(ERROR, 0),
            last_seen=last_seen.get(worker),
        )
        for worker in sorted(set(per_worker) | set(running))
    ]
    oldest = rows["oldest_pending"]
    return Report(
        since=since,
        until=until,
        totals=totals,
        tasks=tasks,
        workers=workers,
        oldest_pending_age=None if oldest is None else (now - oldest).total_seconds(),
        slow_after=slow_after.total_seconds(),
        long_running=rows["slow"],
        exceptions=sorted(rows["exceptions"], key=lambda item: (-item[1], item[0])),
        timeline=_timeline(since, until, rows["timeline"]),
    )


def _timeline(since: datetime, until: datetime, rows: list[tuple[int, str, int]]) -> list[Bucket]:
    width = bucket_seconds(since, until)
    count = max(1, -(-int((until - since).total_seconds()) // width))
    ended: dict[tuple[int, str], int] = {(b, status): n for b, status, n in rows}
    return [
        Bucket(
            start=since + timedelta(seconds=index * width),
            finished=ended.get((index, FINISHED), 0),
            failed=ended.get((index, ERROR), 0),
        )
        for index in range(count)
    ]


def _task_stats(
    name: str,
    counts: dict[str, int],
    runtime: dict[str, float | None],
    wait: dict[str, float | None],
    minutes: float,
) -> TaskStats:
    ended = counts.get(FINISHED, 0) + counts.get(ERROR, 0)
    return TaskStats(
        name=name,
        counts={state: counts.get(state, 0) for state in STATES},
        failure_rate=counts.get(ERROR, 0) / ended if ended else None,
        runtime_p50=runtime.get("p50"),
        runtime_p95=runtime.get("p95"),
        runtime_max=runtime.get("max"),
        wait_p50=wait.get("p50"),
        wait_p95=wait.get("p95"),
        throughput_per_minute=counts.get(FINISHED, 0) / minutes,
    )
