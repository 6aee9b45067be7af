"""The worker's heartbeat: a thread of the worker's main process that records the worker alive
and, now and then, marks lost the running jobs of workers that went silent."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals

from taskjobs import liveness
from taskjobs.celery.recorder import drain_all
from taskjobs.settings import Settings

logger = logging.getLogger("taskjobs")


# Seconds between two rounds of deleting expired jobs, and what one round may delete at most.
EXPIRE_EVERY = 60.0
EXPIRE_BATCHES, EXPIRE_BATCH_SIZE = 10, 1000


class Heart(threading.Thread):
    """Beats for worker ``name`` every interval; reaps silent workers after each beat; now and
    then deletes jobs past their time to keep."""

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(name=f"taskjobs-heartbeat-{name}", daemon=True)
        self.worker = name
        self.timeout = settings.worker_timeout
        self.interval = liveness.beat_interval(self.timeout)
        self.keep = {
            state: seconds
            for state, seconds in (("finished", settings.keep_finished),
                                   ("error", settings.keep_error))
            if seconds is not None
        }  # fmt: skip
        self.stopping = threading.Event()
        # Monotonic time since which this worker's heartbeats have been written.
        self.beating_since: float | None = None

    def run(self) -> None:
        next_expiry = time.monotonic()
        while not self.stopping.is_set():
            self.beat_and_reap()
            if self.keep and time.monotonic() >= next_expiry:
                self.expire()
                next_expiry = time.monotonic() + EXPIRE_EVERY
            self.stopping.wait(self.interval)

    def expire(self) -> None:
        try:
            deleted = liveness.expire(self.keep, EXPIRE_BATCHES, EXPIRE_BATCH_SIZE)
            if deleted:
                logger.info("taskjobs: deleted %d job(s) past their time to keep", deleted)
        except Exception:
            logger.exception("taskjobs: deleting expired jobs failed")

    def beat_and_reap(self) -> None:
        try:
            liveness.beat(self.worker, os.uname().nodename, os.getpid())
        except Exception:
            self.beating_since = None
            logger.exception("taskjobs: heartbeat of worker %s failed", self.worker)
            return
        now = time.monotonic()
        if self.beating_since is None:
            self.beating_since = now
        # Only a worker that has itself been beating for a whole timeout judges others: after
        # an outage of the job store every worker is silent, and none of them is dead.
        if now - self.beating_since < self.timeout:
            return
        try:
            for worker, count in liveness.reap(self.timeout).items():
                logger.warning(
                    "taskjobs: worker %s sent no heartbeat for over %gs: %d running job(s) "
                    "marked lost",
                    worker,
                    self.timeout,
                    count,
                )
        except Exception:
            logger.exception("taskjobs: looking for silent workers failed (worker %s)", self.worker)

    def stop(self) -> None:
        self.stopping.set()


_heart: Heart | None = None


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Start beating once the worker consumes (the pool exists by then)."""
    from taskjobs.celery.handlers import installed

    global _heart
    name = getattr(sender, "hostname", None)
    apps = list(installed.items())
    if name is None or not apps or _heart is not None:
        return
    _heart = Heart(name, apps[0][1])
    _heart.start()


def on_worker_shutting_down(sender: Any = None, how: str | None = None, **_: Any) -> None:
    """A cold shutdown kills running tasks: their jobs end lost now, not after a timeout."""
    if _heart is None or how != "Cold":
        return
    _stopped(_heart.worker, "stopped by a cold shutdown while the task ran")


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """A warm shutdown has let its tasks finish: write out what is buffered, record the stop."""
    global _heart
    drain_all()
    if _heart is None:
        return
    _heart.stop()
    _stopped(_heart.worker, "shut down while the task ran")
    _heart = None


def on_worker_process_shutdown(**_: Any) -> None:
    """A pool process stops: write out what it buffered while the store was unreachable."""
    drain_all()


def _stopped(worker: str, reason: str) -> None:
    try:
        liveness.worker_stopped(worker, reason)
    except Exception:
        logger.exception("taskjobs: could not record the stop of worker %s", worker)


def connect() -> None:
    for signal, receiver in (
        (signals.worker_ready, on_worker_ready),
        (signals.worker_shutting_down, on_worker_shutting_down),
        (signals.worker_shutdown, on_worker_shutdown),
        (signals.worker_process_shutdown, on_worker_process_shutdown),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"taskjobs.{receiver.__name__}")
