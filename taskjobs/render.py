"""The CLI's text: tables, the status report and values, fitted to 80 columns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskjobs.model import ERROR, FINISHED, STATES, Job, utcnow
from taskjobs.queries import JobWithHistory, Page, WorkerStatus
from taskjobs.report import Report

# Characters of a job id shown in tables; ``show`` accepts any unique prefix.
SHORT_ID = 8


def report_text(built: Report) -> str:
    """The report as text that fits in 80 columns."""
    lines = [
        f"Jobs created {moment(built.since, full=True)} .. {moment(built.until, full=True)} UTC",
        "  " + "  ".join(f"{state} {built.totals.get(state, 0)}" for state in STATES),
        f"  oldest pending: {duration(built.oldest_pending_age)}"
        if built.oldest_pending_age is not None
        else "  oldest pending: none pending",
        "",
        f"{'task':<20} {'done':>6} {'err':>5} {'fail%':>5} {'run p50':>8} {'p95':>7} "
        f"{'max':>7} {'wait p50':>8} {'/min':>6}",
    ]
    for task in built.tasks:
        lines.append(
            f"{clip(task.name, 20):<20} {task.counts[FINISHED]:>6} {task.counts[ERROR]:>5} "
            f"{percent(task.failure_rate):>5} {duration(task.runtime_p50):>8} "
            f"{duration(task.runtime_p95):>7} {duration(task.runtime_max):>7} "
            f"{duration(task.wait_p50):>8} {task.throughput_per_minute:>6.1f}"
        )
    if not built.tasks:
        lines.append("  (no jobs in this window)")
    lines += ["", f"{'worker':<34} {'running':>7} {'processed':>9} {'failed':>6}  last seen"]
    for worker in built.workers:
        lines.append(
            f"{clip(worker.worker, 34):<34} {worker.running:>7} {worker.processed:>9} "
            f"{worker.failed:>6}  {moment(worker.last_seen)}"
        )
    if not built.workers:
        lines.append("  (no worker has run a job in this window)")
    lines += ["", f"Running longer than {duration(built.slow_after)}"]
    for job in built.long_running:
        age = (utcnow() - job.started_at).total_seconds() if job.started_at else None
        lines.append(
            f"  {job.id[:SHORT_ID]}  {clip(job.name, 30):<30} {duration(age):>8}  "
            f"{clip(job.worker or '', 26)}"
        )
    if not built.long_running:
        lines.append("  (none)")
    lines += ["", "Most frequent errors"]
    for exc_type, count in built.exceptions[:10]:
        lines.append(f"  {count:>6}  {clip(exc_type, 70)}")
    if not built.exceptions:
        lines.append("  (none)")
    return "\n".join(lines)


def job_text(shown: JobWithHistory) -> str:
    """Every field of the job, its history and its messages."""
    job = shown.job
    fields = job.as_dict()
    messages = fields.pop("messages")
    width = max(len(key) for key in fields)
    lines = [
        f"{key:<{width}}  {'' if value is None or value == '' else plain(key, value)}".rstrip()
        for key, value in fields.items()
    ]
    lines += [f"{'queue_wait':<{width}}  {duration(job.queue_wait)}", "", "history:"]
    lines += [
        f"  {moment(step.at, full=True)}  {step.status:<8} {step.celery_state or '':<9} "
        f"attempt {(step.retries or 0) + 1}  {step.worker or ''}".rstrip()
        for step in shown.history
    ]
    lines += ["", "messages:"]
    lines += [f"  {line}" for line in messages.splitlines()] or ["  (none)"]
    return "\n".join(lines)


def page_text(page: Page) -> str:
    """A page of jobs as a table, and how to ask for the next page if there is one."""
    table = jobs_table(list(page.jobs))
    return table if page.next_after is None else f"{table}\n(more: --after {page.next_after})"


def workers_table(statuses: list[WorkerStatus]) -> str:
    """Workers, their state, running jobs and heartbeats, in 80 columns."""
    lines = [
        f"{'WORKER':<21} {'STATE':<7} {'RUNNING':>7} {'PID':>7} {'STARTED':<11} "
        f"{'LAST SEEN':>10} {'STOPPED':<11}"
    ]
    for status in statuses:
        worker = status.worker
        lines.append(
            f"{clip(worker.name, 21):<21} {status.state:<7} {status.running:>7} "
            f"{worker.pid or '':>7} {moment(worker.started_at):<11} "
            f"{duration(status.silent_for) + ' ago':>10} "
            f"{moment(worker.stopped_at) if worker.stopped_at else '':<11}".rstrip()
        )
    if not statuses:
        lines.append("(no worker has sent a heartbeat)")
    return "\n".join(lines)


def jobs_table(found: list[Job]) -> str:
    header = (
        f"{'ID':<8} {'TASK':<20} {'STATE':<8} {'USER':<8} {'WORKER':<12} {'CREATED':<11} "
        f"{'RUNTIME':>7}"
    )
    rows = [
        f"{job.id[:SHORT_ID]:<8} {clip(job.name, 20):<20} {job.status:<8} "
        f"{clip(job.user, 8):<8} {clip(job.worker or '', 12):<12} {moment(job.created_at):<11} "
        f"{duration(job.runtime):>7}"
        for job in found
    ]
    return "\n".join([header, *rows]) if rows else header + "\n(no jobs)"


def clip(text: str, width: int) -> str:
    """Fit ``text`` in ``width`` columns, keeping its end (task names end in what matters)."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def moment(at: datetime | None, *, full: bool = False) -> str:
    """A time as text: the date and time in full, or month, day and minute."""
    if at is None:
        return "-"
    return f"{at:%Y-%m-%d %H:%M:%S}" if full else f"{at:%m-%d %H:%M}"


def duration(seconds: float | None) -> str:
    """Seconds as a short human duration: 12ms, 4.2s, 3m05s, 2h10m, 3d04h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def plain(key: str, value: Any) -> str:
    if isinstance(value, datetime):
        return moment(value, full=True) + " UTC"
    if key == "runtime":
        return f"{value:.3f}s"
    return str(value)
