"""What a database error means to a caller of the store: a ``StoreError`` that names the
operation and the database, says why in the driver's own words, and tells whether the same
call may succeed later (the database could not be reached) or never will (the call was bad)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL

from taskjobs.errors import StoreError
from taskjobs.store.engine import safe_url


def store_error(exc: sa.exc.SQLAlchemyError, operation: str, url: str | URL) -> StoreError:
    """The ``StoreError`` to raise for ``exc``, met while trying to ``operation``."""
    return StoreError(
        f"could not {operation} in {safe_url(url)}: {reason(exc)}", retryable=unreachable(exc)
    )


def unreachable(exc: sa.exc.SQLAlchemyError) -> bool:
    """Whether the error means the database could not be reached, not that the write was bad."""
    if getattr(exc, "connection_invalidated", False):
        return True
    return isinstance(
        exc,
        (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            sa.exc.DisconnectionError,
            sa.exc.TimeoutError,
        ),
    )


def reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own message, on one line, without SQLAlchemy's statement dump."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    return " ".join(text.split())[:500]
