"""`celery -A proj jobs ...`: the taskjobs commands in Celery's own CLI, on the app's store."""

from __future__ import annotations

from typing import Any

import click

from taskjobs import cli, config
from taskjobs.settings import Settings


@click.group(name="jobs")
@click.pass_context
def jobs(ctx: click.Context) -> None:
    """Tracked jobs (taskjobs): list, show, report, watch, purge, db."""
    app: Any = getattr(ctx.obj, "app", None)
    if app is not None:
        config.configure_default(Settings.load(app.conf).database_url)


for command in (
    cli.list_jobs,
    cli.show,
    cli.report,
    cli.watch,
    cli.purge,
    cli.workers,
    cli.reap,
    cli.reconcile,
    cli.db,
):
    jobs.add_command(command)
