"""The ``taskjobs`` command: list, show, report, watch and purge jobs; migrate; a demo.

The same commands run as ``celery -A proj jobs ...`` (see ``taskjobs.celery.command``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import click

from taskjobs import liveness, render
from taskjobs.api.job import getJobHistory
from taskjobs.config import URL_VARIABLE, configure, current_store
from taskjobs.errors import TaskJobsError
from taskjobs.model import (
    ERROR,
    FINISHED,
    RUNNING,
    STATES,
    Job,
    check_job_id,
    jsonable,
    utcnow,
)
from taskjobs.report import build_report
from taskjobs.settings import Settings
from taskjobs.store import Store
from taskjobs.store.engine import safe_url

F = TypeVar("F", bound=Callable[..., Any])

# Rows ``list`` shows unless told otherwise.
DEFAULT_LIMIT = 50
# Jobs deleted per transaction by ``purge``.
PURGE_BATCH = 1000

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration such as ``90s``, ``10m``, ``2h`` or ``7d``."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value))
        if not match:
            self.fail(
                f"invalid duration {value!r}: use a number and a unit, as in 90s, 10m, 2h or 7d",
                param,
                ctx,
            )
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


class Moment(click.ParamType):  # type: ignore[type-arg]
    """A point in time: a duration ago (``2h``) or an ISO 8601 time (UTC when naive)."""

    name = "time"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        if _DURATION.match(str(value)):
            return utcnow() - Duration().convert(value, param, ctx)
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"invalid time {value!r}: give a duration ago (90s, 10m, 2h, 7d) "
                "or an ISO 8601 time such as 2026-11-28T09:00",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def db_option(function: F) -> F:
    """The ``--db URL`` option every command takes."""
    return click.option(
        "--db",
        "url",
        envvar=URL_VARIABLE,
        default=None,
        metavar="URL",
        help=f"Database URL (default: ${URL_VARIABLE}, else sqlite:///taskjobs.sqlite3).",
    )(function)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        function
    )


# Where ``celery -A proj jobs`` leaves the app's settings for the commands (``click.Context.meta``).
SETTINGS_KEY = "taskjobs.settings"


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn taskjobs errors into one line on stderr and exit status 1, never a traceback."""
    try:
        yield
    except TaskJobsError as exc:
        raise click.ClickException(str(exc)) from None


def use_store(url: str | None) -> Store:
    """The store for ``--db`` (or the environment), else the one configured already."""
    with clear_errors():
        return configure(url) if url else current_store()


@click.group()
@click.version_option(package_name="taskjobs")
def main() -> None:
    """Celery tasks as durable, queryable jobs."""


# -- list / show ----------------------------------------------------------------------------------


@main.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--name", help="Only jobs of this task name.")
@click.option("--user", help="Only jobs of this user.")
@click.option("--worker", help="Only jobs that ran (or run) on this worker.")
@click.option("--since", type=Moment(), help="Created at or after: 2h (ago) or an ISO time.")
@click.option("--until", type=Moment(), help="Created before: 2h (ago) or an ISO time.")
@click.option(
    "--limit", type=click.IntRange(1, 1_000_000), default=DEFAULT_LIMIT, show_default=True
)
@json_option
@db_option
def list_jobs(
    state: str | None,
    name: str | None,
    user: str | None,
    worker: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
    url: str | None,
) -> None:
    """List jobs, newest first."""
    store = use_store(url)
    with clear_errors():
        found = store.select(
            status=state,
            name=name,
            user=user,
            worker=worker,
            since=since,
            until=until,
            limit=limit,
        )
    if as_json:
        click.echo(json.dumps([jsonable(job.as_dict()) for job in found], indent=2))
        return
    click.echo(render.jobs_table(found))


@main.command()
@click.argument("job_id")
@json_option
@db_option
def show(job_id: str, as_json: bool, url: str | None) -> None:
    """Show one job: every field, its history and its messages. JOB_ID may be a unique prefix."""
    store = use_store(url)
    with clear_errors():
        job = _find(store, job_id)
        history = getJobHistory(job.id)
    if as_json:
        click.echo(json.dumps(jsonable({"job": job.as_dict(), "history": history}), indent=2))
        return
    fields = job.as_dict()
    messages = fields.pop("messages")
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        text = "" if value is None or value == "" else render.plain(key, value)
        click.echo(f"{key:<{width}}  {text}")
    click.echo(f"{'queue_wait':<{width}}  {render.duration(job.queue_wait)}")
    click.echo("\nhistory:")
    for step in history:
        click.echo(
            f"  {render.moment(step['at'], full=True)}  {step['status']:<8} "
            f"{step['celery_state'] or '':<9} attempt {(step['retries'] or 0) + 1}  "
            f"{step['worker'] or ''}"
        )
    click.echo("\nmessages:")
    click.echo("\n".join(f"  {line}" for line in messages.splitlines()) or "  (none)")


def _find(store: Store, job_id: str) -> Job:
    """The job with this id, or else the only job whose id starts with it."""
    job = store.get(check_job_id(job_id))
    if job is not None:
        return job
    matches = store.ids_starting_with(job_id, 2)
    if not matches:
        raise TaskJobsError(f"no job with id {job_id!r} (nor any id starting with it)")
    if len(matches) > 1:
        raise TaskJobsError(f"job id prefix {job_id!r} is ambiguous: give more characters")
    found = store.get(matches[0])
    assert found is not None
    return found


# -- report / watch -------------------------------------------------------------------------------


@main.command()
@click.option("--since", type=Moment(), help="Report on jobs created since then (default: 24h).")
@click.option(
    "--slow",
    type=Duration(),
    default="10m",
    show_default=True,
    help="List running jobs that started longer ago than this.",
)
@json_option
@db_option
def report(since: datetime | None, slow: timedelta, as_json: bool, url: str | None) -> None:
    """The status report: totals, per task, per worker, waits, failures."""
    store = use_store(url)
    with clear_errors():
        built = build_report(since=since, slow_after=slow, store=store)
    if as_json:
        click.echo(json.dumps(built.as_dict(), indent=2))
        return
    click.echo(render.report_text(built))


@main.command()
@click.option("--since", type=Moment(), help="Report on jobs created since then (default: 24h).")
@click.option("--interval", type=Duration(), default="2s", show_default=True)
@click.option("--times", type=click.IntRange(min=1), help="Stop after this many refreshes.")
@db_option
def watch(since: datetime | None, interval: timedelta, times: int | None, url: str | None) -> None:
    """The report and the running jobs, refreshed until Ctrl-C."""
    store = use_store(url)
    shown = 0
    try:
        while times is None or shown < times:
            with clear_errors():
                built = build_report(since=since, store=store)
                running = store.select(status=RUNNING, limit=15)
            if shown:
                click.clear()
            click.echo(
                f"taskjobs watch  {safe_url(store.url)}  {render.moment(utcnow(), full=True)}"
            )
            click.echo(render.report_text(built))
            click.echo("\nRunning now")
            click.echo(render.jobs_table(running))
            shown += 1
            if times is None or shown < times:
                time.sleep(interval.total_seconds())
    except KeyboardInterrupt:
        pass


# -- purge ----------------------------------------------------------------------------------------


@main.command()
@click.option("--older-than", type=Duration(), required=True, help="Age, by creation: 7d, 12h...")
@click.option(
    "--state",
    "states",
    type=click.Choice(STATES),
    multiple=True,
    help="States to delete (repeatable). Default: finished and error. Pending and running jobs "
    "are deleted only when named here.",
)
@db_option
def purge(older_than: timedelta, states: tuple[str, ...], url: str | None) -> None:
    """Delete old jobs (and their history), in batches."""
    store = use_store(url)
    chosen = states or (FINISHED, ERROR)
    before = utcnow() - older_than
    with clear_errors():
        deleted = store.purge(statuses=chosen, before=before, batch_size=PURGE_BATCH)
    click.echo(
        f"deleted {deleted} job{'s' if deleted != 1 else ''} ({', '.join(chosen)}) "
        f"created before {render.moment(before, full=True)}"
    )


# -- workers / reap -------------------------------------------------------------------------------


@main.command()
@json_option
@db_option
def workers(as_json: bool, url: str | None) -> None:
    """Workers that sent heartbeats: when they started, were last seen, stopped."""
    store = use_store(url)
    with clear_errors():
        found = store.list_workers()
    if as_json:
        click.echo(json.dumps(jsonable(found), indent=2))
        return
    click.echo(f"{'WORKER':<30} {'PID':>7} {'STARTED':<11} {'LAST SEEN':<19} {'STOPPED':<11}")
    for worker in found:
        click.echo(
            f"{render.clip(worker['name'], 30):<30} {worker['pid'] or '':>7} "
            f"{render.moment(worker['started_at']):<11} "
            f"{render.moment(worker['last_seen'], full=True):<19} "
            f"{render.moment(worker['stopped_at']) if worker['stopped_at'] else '':<11}"
        )
    if not found:
        click.echo("(no worker has sent a heartbeat)")


@main.command()
@click.option(
    "--timeout",
    type=Duration(),
    help="Silence after which a worker counts as dead [default: the workers' own setting, "
    "TASKJOBS_WORKER_TIMEOUT or taskjobs_worker_timeout, else 60s].",
)
@db_option
@click.pass_context
def reap(ctx: click.Context, timeout: timedelta | None, url: str | None) -> None:
    """Mark lost the running jobs of workers that stopped sending heartbeats."""
    if timeout is None:
        with clear_errors():
            settings = ctx.meta.get(SETTINGS_KEY) or Settings.load()
        timeout = timedelta(seconds=settings.worker_timeout)
    store = use_store(url)
    with clear_errors():
        marked = liveness.reap(timeout.total_seconds(), store)
    if not marked:
        click.echo(f"no worker has been silent for over {render.duration(timeout.total_seconds())}")
    for worker, count in sorted(marked.items()):
        click.echo(f"{worker}: silent, {count} running job{'s' if count != 1 else ''} marked lost")


@main.command()
@click.option(
    "--broker",
    required=True,
    metavar="URL",
    envvar="CELERY_BROKER_URL",
    help="The broker's URL (redis:// or amqp://; default: $CELERY_BROKER_URL).",
)
@click.option(
    "--older-than",
    type=Duration(),
    default="1m",
    show_default=True,
    help="Only jobs created longer ago than this.",
)
@click.option("--queue", "queues", multiple=True, help="Only this queue (repeatable).")
@click.option("--dry-run", is_flag=True, help="Say what would be ended; change nothing.")
@db_option
def reconcile(
    broker: str, older_than: timedelta, queues: tuple[str, ...], dry_run: bool, url: str | None
) -> None:
    """End pending jobs whose messages the broker no longer holds (after `celery purge`)."""
    from taskjobs.celery.reconcile import reconcile as reconcile_with

    store = use_store(url)
    with clear_errors():
        checks = reconcile_with(store, broker, created_before=utcnow() - older_than,
                                queues=queues or None, dry_run=dry_run)  # fmt: skip
    if not checks:
        click.echo("no pending job waits in a queue")
    verb = "would be ended" if dry_run else "ended"
    for check in checks:
        if check.undecided:
            click.echo(f"{check.queue}: {check.waiting} waiting, left alone: {check.undecided}")
        else:
            click.echo(f"{check.queue}: {check.waiting} waiting, {len(check.vanished)} without a "
                       f"message {verb} (VANISHED)")  # fmt: skip


# -- db -------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Manage the job database's schema."""


@db.command()
@db_option
def upgrade(url: str | None) -> None:
    """Create the tables or bring them to this version's schema."""
    store = use_store(url)
    with clear_errors():
        before, now = store.upgrade()
    where = safe_url(store.url)
    if before == now:
        click.echo(f"{where}: schema already at revision {now}")
    else:
        click.echo(f"{where}: schema upgraded from revision {before or 'none'} to {now}")


@db.command()
@db_option
def current(url: str | None) -> None:
    """Print the schema revision of the database."""
    store = use_store(url)
    with clear_errors():
        revision = store.revision()
    click.echo(f"{safe_url(store.url)}: revision {revision or 'none (no taskjobs tables yet)'}")


# -- demo -----------------------------------------------------------------------------------------


@main.command()
@db_option
def demo(url: str | None) -> None:
    """Run a real Celery worker on a broker that needs no server, send it a mixed batch of
    tasks, show the jobs as they complete, then the report."""
    from taskjobs.celery.demo import run_demo

    store = use_store(url)
    with clear_errors():
        started = run_demo(store, click.echo)
        click.echo("")
        click.echo(render.report_text(build_report(since=started, store=store)))
    click.echo(
        "\nNext: taskjobs list, taskjobs show <id>, taskjobs report"
        + ("" if url else "  (the jobs are in ./taskjobs.sqlite3)")
    )


if __name__ == "__main__":
    main()
