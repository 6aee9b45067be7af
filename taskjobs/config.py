"""The store the job functions use: configure(), an app setting, the environment, the default."""

from __future__ import annotations

import os

from taskjobs.store import Store, store_for

# Environment variable naming the database URL when nothing else does.
URL_VARIABLE = "TASKJOBS_DATABASE_URL"
# The embedded default: a SQLite file in the working directory, no server needed.
DEFAULT_URL = "sqlite:///taskjobs.sqlite3"

_current: Store | None = None
# Whether ``configure(url)`` chose the store: then an app's own setting does not override it.
_explicit = False


def configure(url: str | None = None) -> Store:
    """Use the database at ``url`` for every job function, and return its store.

    Without a URL: ``TASKJOBS_DATABASE_URL``, else ``sqlite:///taskjobs.sqlite3``. Calling it
    again switches stores. The database is reached (and its schema created or upgraded) on
    first use, not here; a malformed URL raises ``ConfigurationError`` at once.
    """
    global _current, _explicit
    _current = _store(url)
    _explicit = url is not None
    return _current


def configure_default(url: str | None) -> Store:
    """Use ``url`` (an app's setting) unless ``configure(url)`` chose a store explicitly."""
    global _current
    if not _explicit or _current is None:
        _current = _store(url)
    return _current


def current_store() -> Store:
    """The store the job functions read and write now."""
    return _current or configure()


def _store(url: str | None) -> Store:
    return store_for(url or os.environ.get(URL_VARIABLE) or DEFAULT_URL)
