"""The ``taskjobs`` command: list, show, report, watch and purge jobs; migrate; a demo.

The same commands run as ``celery -A proj jobs ...`` (see ``taskjobs.celery.command``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import click

from taskjobs import liveness, queries, render
from taskjobs.cli_options import (
    Duration,
    Moment,
    clear_errors,
    db_option,
    json_option,
    timeout_option,
    use_store,
    worker_timeout,
)
from taskjobs.model import ERROR, FINISHED, RUNNING, STATES, jsonable, utcnow
from taskjobs.store import Store
from taskjobs.store.engine import safe_url
from taskjobs.store.schema import head_revision, is_newer

# Running jobs ``watch`` shows.
WATCH_RUNNING = 15
# Jobs deleted per transaction by ``purge``.
PURGE_BATCH = 1000


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
    "--limit",
    type=click.IntRange(1, queries.MAX_LIMIT),
    default=queries.DEFAULT_LIMIT,
    show_default=True,
)
@click.option("--after", metavar="ID", help="The next page: jobs after this one (its full id).")
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
    after: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """List jobs, newest first."""
    store = use_store(url)
    with clear_errors():
        page = queries.list_jobs(state=state, name=name, user=user, worker=worker, since=since,
                                 until=until, after=after, limit=limit, store=store)  # fmt: skip
    if as_json:
        click.echo(json.dumps([jsonable(job.as_dict()) for job in page.jobs], indent=2))
        return
    click.echo(render.page_text(page))


@main.command()
@click.argument("job_id")
@json_option
@db_option
def show(job_id: str, as_json: bool, url: str | None) -> None:
    """Show one job: every field, its history and its messages. JOB_ID may be a unique prefix."""
    store = use_store(url)
    with clear_errors():
        shown = queries.job_with_history(job_id, store)
    if as_json:
        click.echo(json.dumps(shown.as_dict(), indent=2))
        return
    click.echo(render.job_text(shown))


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
        built = queries.report(since=since, slow_after=slow, store=store)
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
                built = queries.report(since=since, store=store)
                running = queries.list_jobs(state=RUNNING, limit=WATCH_RUNNING, store=store)
            if shown:
                click.clear()
            click.echo(
                f"taskjobs watch  {safe_url(store.url)}  {render.moment(utcnow(), full=True)}"
            )
            click.echo(render.report_text(built))
            click.echo("\nRunning now")
            click.echo(render.page_text(running))
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
@timeout_option
@json_option
@db_option
@click.pass_context
def workers(ctx: click.Context, timeout: timedelta | None, as_json: bool, url: str | None) -> None:
    """Workers that sent heartbeats: alive, silent or stopped, their running jobs, when they
    started, were last seen, stopped."""
    silence = worker_timeout(ctx, timeout)
    store = use_store(url)
    with clear_errors():
        found = queries.list_workers(timeout=silence, store=store)
    if as_json:
        click.echo(json.dumps([status.as_dict() for status in found], indent=2))
        return
    click.echo(render.workers_table(found))


@main.command()
@timeout_option
@db_option
@click.pass_context
def reap(ctx: click.Context, timeout: timedelta | None, url: str | None) -> None:
    """Mark lost the running jobs of workers that stopped sending heartbeats."""
    silence = worker_timeout(ctx, timeout)
    store = use_store(url)
    with clear_errors():
        marked = liveness.reap(silence, store)
    if not marked:
        click.echo(f"no worker has been silent for over {render.duration(silence)}")
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


# -- serve ----------------------------------------------------------------------------------------

# Where the web face listens unless told otherwise (Flower's port).
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5555
AUTH_VARIABLE = "TASKJOBS_BASIC_AUTH"


@main.command()
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--url-prefix", default="", help="Serve every page under this path (/taskjobs).")
@click.option(
    "--basic-auth",
    envvar=AUTH_VARIABLE,
    metavar="USER:PASSWORD[,...]",
    help=f"Ask for one of these logins on every route but /healthz [default: ${AUTH_VARIABLE}].",
)
@click.option(
    "--refresh",
    type=click.IntRange(0, 3600),
    default=10,
    show_default=True,
    help="Seconds between the reloads of an open page; 0: never.",
)
@timeout_option
@db_option
@click.pass_context
def serve(
    ctx: click.Context,
    address: str,
    port: int,
    url_prefix: str,
    basic_auth: str | None,
    refresh: int,
    timeout: timedelta | None,
    url: str | None,
) -> None:
    """Serve the dashboard, the job and worker pages, a Flower-compatible JSON API and
    Prometheus metrics, read-only, from the job store."""
    store = use_store(url)
    run_server(
        store,
        address=address,
        port=port,
        url_prefix=url_prefix,
        basic_auth=basic_auth,
        refresh=refresh,
        worker_timeout=worker_timeout(ctx, timeout),
    )


def run_server(
    store: Store,
    *,
    address: str = DEFAULT_ADDRESS,
    port: int = DEFAULT_PORT,
    url_prefix: str = "",
    basic_auth: str | None = None,
    refresh: int = 10,
    worker_timeout: float | None = None,
) -> None:
    """Run the web app on ``store`` with uvicorn until interrupted."""
    try:
        from taskjobs.web import create_app, server
    except ImportError as exc:
        raise click.ClickException(
            f"taskjobs serve needs the web extra ({exc.name} is missing): "
            "pip install 'taskjobs[web]'"
        ) from None
    options: dict[str, Any] = {"basic_auth": basic_auth, "url_prefix": url_prefix,
                               "refresh": refresh}  # fmt: skip
    if worker_timeout is not None:
        options["worker_timeout"] = worker_timeout
    with clear_errors():
        app = create_app(store, **options)
    if not basic_auth and not server.is_loopback(address):
        click.echo(
            f"warning: serving on {address} without --basic-auth: anyone who reaches this "
            "address reads every job",
            err=True,
        )
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
    host = f"[{address}]" if ":" in address else address
    click.echo(f"taskjobs: serving {safe_url(store.url)} on http://{host}:{port}{prefix}/")
    server.run(app, address=address, port=port)


# -- db -------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Manage the job database's schema."""


@db.command()
@db_option
def upgrade(url: str | None) -> None:
    """Create the tables or bring them to this version's schema, then bring the running
    aggregates of the report up to date."""
    store = use_store(url)
    with clear_errors():
        before, now = store.upgrade()
        folded = store.fold_stats()
    where = safe_url(store.url)
    if is_newer(now):
        click.echo(
            f"{where}: schema at revision {now}, newer than this taskjobs' {head_revision()}: "
            "left as it is"
        )
    elif before == now:
        click.echo(f"{where}: schema already at revision {now}")
    else:
        click.echo(f"{where}: schema upgraded from revision {before or 'none'} to {now}")
    if folded:
        click.echo(f"{where}: {folded:,} job change(s) folded into the report's aggregates")


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
@click.option("--serve", "then_serve", is_flag=True, help="Then serve the pages on the jobs.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@db_option
def demo(then_serve: bool, port: int, url: str | None) -> None:
    """Run a real Celery worker on a broker that needs no server, send it a mixed batch of
    tasks, show the jobs as they complete, then the report."""
    from taskjobs.celery.demo import run_demo

    store = use_store(url)
    with clear_errors():
        started = run_demo(store, click.echo)
        click.echo("")
        click.echo(render.report_text(queries.report(since=started, store=store)))
    where = f" --db {safe_url(store.url)}" if url else ""
    click.echo(
        "\nNext: taskjobs list, taskjobs show <id>, taskjobs report"
        + ("" if url else "  (the jobs are in ./taskjobs.sqlite3)")
    )
    if then_serve:
        run_server(store, port=port)
    else:
        click.echo(f"The dashboard: taskjobs serve{where}  (then open http://127.0.0.1:{port}/)")


if __name__ == "__main__":
    main()
