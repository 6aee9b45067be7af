"""The default store: the one the job functions use, and tracked apps without a database URL.

First found: ``taskjobs.configure(url)``; the ``taskjobs_database_url`` of the first app
installed with one; ``TASKJOBS_DATABASE_URL``; ``sqlite:///taskjobs.sqlite3``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from taskjobs.store import Store, store_for

# Environment variable naming the database URL when nothing else does.
URL_VARIABLE = "TASKJOBS_DATABASE_URL"
# The embedded default: a SQLite file in the working directory, no server needed.
DEFAULT_URL = "sqlite:///taskjobs.sqlite3"

_current: Store | None = None
# Whether ``configure(url)`` chose the store: then it is every app's store too.
_explicit = False
# Whether an installed app's URL chose the default store: a later app does not change it.
_from_app = False


def configure(url: str | None = None) -> Store:
    """Use the database at ``url`` for every job function and every tracked app; return it.

    Without a URL: ``TASKJOBS_DATABASE_URL``, else ``sqlite:///taskjobs.sqlite3``, and apps
    installed afterwards with a database URL of their own write there again. Calling it again
    switches stores. The database is reached (and its schema created or upgraded) on first
    use, not here; a malformed URL raises ``ConfigurationError`` at once.
    """
    global _current, _explicit, _from_app
    _current = _store(url)
    _explicit = url is not None
    _from_app = False
    return _current


@contextmanager
def using(store: Store) -> Iterator[Store]:
    """Inside the block, ``store`` is the store of every job function and tracked app, as
    after ``configure(url)``; after it, whatever was configured before is back."""
    global _current, _explicit, _from_app
    saved = (_current, _explicit, _from_app)
    _current, _explicit, _from_app = store, True, False
    try:
        yield store
    finally:
        _current, _explicit, _from_app = saved


def configure_default(url: str | None) -> Store:
    """Make ``url`` (an app's setting) the default store, unless ``configure(url)`` or an app
    installed earlier chose it; return the default store."""
    global _current, _from_app
    if url is not None and not _explicit and not _from_app:
        _current = _store(url)
        _from_app = True
    return current_store()


def current_store() -> Store:
    """The store the job functions read and write now."""
    return _current or configure()


def app_store(own: Store | None) -> Store:
    """The store of an app whose own store (from its setting) is ``own``: the one
    ``configure(url)`` chose, else its own, else the default store."""
    if _explicit or own is None:
        return current_store()
    return own


def _store(url: str | None) -> Store:
    return store_for(url or os.environ.get(URL_VARIABLE) or DEFAULT_URL)
