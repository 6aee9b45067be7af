"""The worker process's own lifecycle: its node name, its heartbeat, its shutdown.

A worker runs one app: the heartbeat beats in that app's store, with that app's timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import signals

from taskjobs.celery import registry
from taskjobs.celery.recorder import drain_all

# This process's worker node name (``celery@host``), known from ``worker_init``; prefork pool
# children inherit it. Inside a task, Celery's request names only the host on some pools.
_node_name: str | None = None


def node_name() -> str | None:
    """The node name of the worker this process belongs to, if it is one."""
    return _node_name


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Remember the worker's node name for the jobs this process (and its children) runs."""
    global _node_name
    _node_name = getattr(sender, "hostname", None)


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Start beating once the worker consumes (the pool exists by then), in the store of the
    worker's app."""
    name = getattr(sender, "hostname", None)
    tracker = registry.installed(getattr(sender, "app", None))
    if name is not None and tracker is not None:
        tracker.start_heartbeat(name)


def on_worker_shutting_down(sender: Any = None, how: str | None = None, **_: Any) -> None:
    """A cold shutdown kills running tasks: their jobs end lost now, not after a timeout."""
    if how != "Cold":
        return
    for tracker in registry.trackers():
        if tracker.heart is not None:
            tracker.heart.stopped("stopped by a cold shutdown while the task ran")


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """A warm shutdown has let its tasks finish: write out what is buffered, record the stop."""
    drain_all()
    for tracker in registry.trackers():
        tracker.stop_heartbeat("shut down while the task ran")


def on_worker_process_shutdown(**_: Any) -> None:
    """A pool process stops: write out what it buffered while the store was unreachable."""
    drain_all()


RECEIVERS: tuple[tuple[Any, Callable[..., None]], ...] = (
    (signals.worker_init, on_worker_init),
    (signals.worker_ready, on_worker_ready),
    (signals.worker_shutting_down, on_worker_shutting_down),
    (signals.worker_shutdown, on_worker_shutdown),
    (signals.worker_process_shutdown, on_worker_process_shutdown),
)
