"""The ``taskjobs`` command."""

from __future__ import annotations

import click

from taskjobs.config import URL_VARIABLE, configure
from taskjobs.errors import TaskJobsError
from taskjobs.store import Store
from taskjobs.store.engine import safe_url

db_option = click.option(
    "--db",
    "url",
    envvar=URL_VARIABLE,
    default=None,
    metavar="URL",
    help=f"Database URL (default: ${URL_VARIABLE}, else sqlite:///taskjobs.sqlite3).",
)


def _store(url: str | None) -> Store:
    try:
        return configure(url)
    except TaskJobsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="taskjobs")
def main() -> None:
    """Celery tasks as durable, queryable jobs."""


@main.group()
def db() -> None:
    """Manage the job database's schema."""


@db.command()
@db_option
def upgrade(url: str | None) -> None:
    """Create the tables or bring them to this version's schema."""
    store = _store(url)
    try:
        before, now = store.upgrade()
    except TaskJobsError as exc:
        raise click.ClickException(str(exc)) from None
    where = safe_url(store.url)
    if before == now:
        click.echo(f"{where}: schema already at revision {now}")
    else:
        click.echo(f"{where}: schema upgraded from revision {before or 'none'} to {now}")


@db.command()
@db_option
def current(url: str | None) -> None:
    """Print the schema revision of the database."""
    store = _store(url)
    try:
        revision = store.revision()
    except TaskJobsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{safe_url(store.url)}: revision {revision or 'none (no taskjobs tables yet)'}")


if __name__ == "__main__":
    main()
