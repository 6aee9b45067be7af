"""Query parameters: each read by name and checked, a bad one answered with a 400 that names
it and says what is valid. No framework code here beyond the mapping it is given."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from taskjobs.model import STATES
from taskjobs.store import JobQuery


class BadParameterError(ValueError):
    """A query parameter the route cannot use: a 400 naming it."""

    def __init__(self, name: str, value: str, valid: str) -> None:
        super().__init__(f"invalid {name} {value!r}: {valid}")
        self.name = name


class Params:
    """The query parameters of one request, read by name."""

    def __init__(self, query: Mapping[str, str], *, known: tuple[str, ...]) -> None:
        unknown = sorted(set(query) - set(known))
        if unknown:
            raise BadParameterError(
                "parameter", unknown[0], f"this route takes {', '.join(known) or 'none'}"
            )
        self._query = query

    def text(self, name: str, *, default: str | None = None) -> str | None:
        """The parameter as given; an empty one counts as absent."""
        value = self._query.get(name)
        return value if value else default

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        """A whole number in [low, high]."""
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise BadParameterError(name, value, f"give a whole number from {low} to {high}")
        return number

    def choice(
        self, name: str, choices: tuple[str, ...], *, default: str | None = None
    ) -> str | None:
        """One of ``choices``."""
        value = self.text(name)
        if value is None:
            return default
        if value not in choices:
            raise BadParameterError(name, value, f"give one of {', '.join(choices)}")
        return value

    def state(self, name: str = "state") -> str | None:
        """One of the job states."""
        return self.choice(name, STATES)

    def job_query(self, **fields: Any) -> JobQuery:
        """A ``JobQuery`` with the filters the job list and ``/api/v1/jobs`` share (``state``,
        ``celery_state``, ``name``, ``user``, ``worker``, ``id`` as a prefix) and ``fields``."""
        return JobQuery(
            status=self.state(),
            celery_state=self.text("celery_state"),
            name=self.text("name"),
            user=self.text("user"),
            worker=self.text("worker"),
            id_prefix=self.text("id"),
            **fields,
        )

    def time(self, name: str) -> datetime | None:
        """A moment: ISO 8601 (UTC unless it says otherwise) or Unix seconds."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except (ValueError, OverflowError, OSError):
            pass
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadParameterError(
                name, value, "give an ISO 8601 time (2026-12-02T09:30:00Z) or Unix seconds"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    def window(self, name: str = "window", *, default: timedelta) -> timedelta:
        """A duration such as ``90s``, ``15m``, ``24h`` or ``7d``."""
        value = self.text(name)
        if value is None:
            return default
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        amount, unit = value[:-1], value[-1:]
        if unit in units and amount.isdigit() and 0 < int(amount) * units[unit] <= 366 * 86400:
            return timedelta(seconds=int(amount) * units[unit])
        raise BadParameterError(
            name, value, "give a positive number of s, m, h or d, up to a year (e.g. 24h)"
        )
