"""`celery -A proj jobs ...`: the taskjobs commands in Celery's own CLI, on the app's store."""

from __future__ import annotations

from typing import Any

import click

from taskjobs import cli, config
from taskjobs.cli_options import SETTINGS_KEY, clear_errors
from taskjobs.settings import Settings


@click.group(name="jobs")
@click.pass_context
def jobs(ctx: click.Context) -> None:
    """Tracked jobs (taskjobs): the taskjobs commands on this app's store."""
    app: Any = getattr(ctx.obj, "app", None)
    if app is not None:
        with clear_errors():
            settings = Settings.load(app.conf)
        ctx.meta[SETTINGS_KEY] = settings
        config.configure_default(settings.database_url)


# Every taskjobs command but the demo, which runs an app of its own.
for name, command in cli.main.commands.items():
    if name != "demo":
        jobs.add_command(command)
