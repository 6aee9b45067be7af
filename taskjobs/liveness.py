"""Worker liveness: heartbeats, and marking lost the jobs of workers that stopped beating.

Celery says nothing when a worker's main process dies (SIGKILL, OOM, a lost host): its running
tasks would show "running" forever. Each worker records a heartbeat; any live worker (or
``taskjobs reap``) marks the running jobs of a silent worker as ``error`` / ``LOST``.
"""

from __future__ import annotations

from datetime import timedelta

from taskjobs.config import current_store
from taskjobs.model import utcnow
from taskjobs.store import Store

# A worker beats this many times per timeout, so one late beat is never fatal.
BEATS_PER_TIMEOUT = 6
# Fastest and slowest heartbeat, in seconds.
MIN_BEAT, MAX_BEAT = 0.2, 10.0


def beat_interval(timeout: float) -> float:
    """Seconds between two heartbeats for a worker timeout of ``timeout`` seconds."""
    return min(max(timeout / BEATS_PER_TIMEOUT, MIN_BEAT), MAX_BEAT)


def beat(name: str, hostname: str | None, pid: int | None, store: Store | None = None) -> None:
    """Record that worker ``name`` is alive now."""
    (store or current_store()).heartbeat(name, hostname=hostname, pid=pid, at=utcnow())


def reap(timeout: float, store: Store | None = None) -> dict[str, int]:
    """Mark lost the running jobs of every worker silent for over ``timeout`` seconds.

    Returns {worker: number of jobs marked}; empty when none was silent, or when another
    process is reaping at this moment.
    """
    now = utcnow()
    return (store or current_store()).reap(
        silent_since=now - timedelta(seconds=timeout),
        worker=None,
        at=now,
        reason=f"sent no heartbeat for over {timeout:g}s while the task ran",
    )


def expire(
    keep: dict[str, float], batches: int, batch_size: int, store: Store | None = None
) -> int:
    """Delete jobs older than their state's time to keep (``{"finished": seconds, ...}``), at
    most ``batches`` batches per state; returns how many were deleted."""
    now = utcnow()
    deleted = 0
    for state, seconds in keep.items():
        deleted += (store or current_store()).purge(
            statuses=[state],
            before=now - timedelta(seconds=seconds),
            batch_size=batch_size,
            max_batches=batches,
        )
    return deleted


def worker_stopped(name: str, reason: str, store: Store | None = None) -> int:
    """Worker ``name`` stopped: mark it so, and mark lost any job still running on it."""
    return (
        (store or current_store())
        .reap(silent_since=None, worker=name, at=utcnow(), reason=reason)
        .get(name, 0)
    )
