"""How the pages show values: times, durations, ids, JSON text, messages. Pure functions; the
templates use them as Jinja2 filters and escape what they return."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from taskjobs import render
from taskjobs.model import Job, message_entries

# Characters of an id the lists show.
SHORT_ID = 12


def when(moment: datetime | None) -> str:
    """A moment as UTC, to the second: ``2026-12-02 09:30:05``."""
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def iso(moment: datetime | None) -> str:
    """A moment as ISO 8601, for a ``<time datetime>``."""
    return "" if moment is None else moment.isoformat()


def ago(moment: datetime | None, now: datetime) -> str:
    """How long before ``now``: ``45s ago``, ``12m ago``, ``3h ago``, ``2d ago``."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    return f"{duration(abs(seconds))} {'ago' if seconds >= 0 else 'from now'}"


def duration(seconds: float | None) -> str:
    """Seconds as the CLI shows them (``85ms``, ``4.2s``, ``3m05s``), or nothing."""
    return "" if seconds is None else render.duration(seconds)


def percent(ratio: float | None) -> str:
    """A ratio as a percentage, or an empty string."""
    return "" if ratio is None else f"{ratio * 100:.1f}%"


def short(job_id: str) -> str:
    """An id cut to what tells it apart in a list."""
    return job_id if len(job_id) <= SHORT_ID else job_id[:SHORT_ID] + "…"


def pretty(text: str) -> str:
    """JSON text indented; any other text (a cut request, a repr) as it is."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=False)
    except ValueError:
        return text


def traceback_of(job: Job) -> str:
    """The traceback the job's messages hold, from its last ``Traceback`` line on."""
    start = job.messages.rfind("Traceback (most recent call last)")
    if start < 0:
        return ""
    block = job.messages[start:]
    end = re.search(r"\n\[[0-9T:\-]+Z\] ", block)
    return block[: end.start()] if end else block.rstrip()


def message_lines(messages: str) -> list[tuple[str, str]]:
    """A job's messages as (time as shown, text) entries."""
    return [(at.replace("T", " ").rstrip("Z"), text) for at, text in message_entries(messages)]


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when,
    "iso": iso,
    "ago": ago,
    "duration": duration,
    "percent": percent,
    "short": short,
}
