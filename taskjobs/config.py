"""Which store the documented functions use: ``configure()``, the environment, or the default."""

from __future__ import annotations

import os

from taskjobs.store import Store, store_for

# Environment variable naming the database URL when ``configure()`` was not called.
URL_VARIABLE = "TASKJOBS_DATABASE_URL"
# The embedded default: a SQLite file in the working directory, no server needed.
DEFAULT_URL = "sqlite:///taskjobs.sqlite3"

_current: Store | None = None


def configure(url: str | None = None) -> Store:
    """Use the database at ``url`` for every job function, and return its store.

    Without a URL: ``TASKJOBS_DATABASE_URL``, else ``sqlite:///taskjobs.sqlite3``. Calling it
    again switches stores. The database is reached (and its schema created or upgraded) on
    first use, not here; a malformed URL raises ``ConfigurationError`` at once.
    """
    global _current
    _current = store_for(url or os.environ.get(URL_VARIABLE) or DEFAULT_URL)
    return _current


def current_store() -> Store:
    """The store the documented job functions read and write now."""
    return _current or configure()
