"""The worker's heartbeat: a thread of the worker's main process that records the worker alive
and, now and then, marks lost the running jobs of workers that went silent."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from taskjobs import liveness
from taskjobs.settings import Settings
from taskjobs.store import Store

logger = logging.getLogger("taskjobs")


# Seconds between two rounds of deleting expired jobs, and what one round may delete at most.
EXPIRE_EVERY = 60.0
EXPIRE_BATCHES, EXPIRE_BATCH_SIZE = 10, 1000
# Seconds between two folds of the logged changes into the running aggregates, and what one
# fold moves at most: readers add up what is not folded yet, so folding often keeps them fast.
FOLD_EVERY = 2.0
FOLD_LIMIT = 100_000
# Seconds between two looks for pool processes that are gone before writing the ends they
# queued (the "batched" mode; ``taskjobs.celery.outcomes``).
WATCH_EVERY = 1.0


class Heart(threading.Thread):
    """Beats for worker ``name`` every interval; reaps silent workers after each beat; folds the
    running aggregates every ``FOLD_EVERY`` seconds; calls ``watch`` (if any) every
    ``WATCH_EVERY`` seconds; now and then deletes jobs past their time to keep. ``store_of()``
    says where, at each beat: the store of the worker's app, which ``configure(url)`` may
    change."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        store_of: Callable[[], Store],
        watch: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(name=f"taskjobs-heartbeat-{name}", daemon=True)
        self.worker = name
        self.store_of = store_of
        # Called every ``WATCH_EVERY`` seconds: the tracker's look for the ends of pool
        # processes that are gone (the "batched" mode).
        self.watch = watch
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
        next_beat = next_fold = next_expiry = next_watch = time.monotonic()
        while not self.stopping.is_set():
            if self.watch is not None and time.monotonic() >= next_watch:
                self.look_for_lost_ends()
                next_watch = time.monotonic() + WATCH_EVERY
            if time.monotonic() >= next_beat:
                self.beat_and_reap()
                next_beat = time.monotonic() + self.interval
            if time.monotonic() >= next_fold:
                self.fold()
                next_fold = time.monotonic() + FOLD_EVERY
            if self.keep and time.monotonic() >= next_expiry:
                self.expire()
                next_expiry = time.monotonic() + EXPIRE_EVERY
            wakes = [next_beat, next_fold, *([next_watch] if self.watch is not None else [])]
            self.stopping.wait(max(min(wakes) - time.monotonic(), 0.0))

    def look_for_lost_ends(self) -> None:
        try:
            if self.watch is not None:
                self.watch()
        except Exception:
            logger.exception("taskjobs: writing the ends of pool processes that are gone failed")

    def fold(self) -> None:
        """Move the changes of jobs' figures logged since the last fold into the running
        aggregates the report and the metrics read (any worker may; one at a time does)."""
        try:
            self.store_of().fold_stats(limit=FOLD_LIMIT)
        except Exception:
            logger.exception("taskjobs: folding the running aggregates failed")

    def expire(self) -> None:
        try:
            deleted = liveness.expire(self.keep, EXPIRE_BATCHES, EXPIRE_BATCH_SIZE, self.store_of())
            if deleted:
                logger.info("taskjobs: deleted %d job(s) past their time to keep", deleted)
        except Exception:
            logger.exception("taskjobs: deleting expired jobs failed")

    def beat_and_reap(self) -> None:
        try:
            liveness.beat(self.worker, os.uname().nodename, os.getpid(), self.store_of())
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
            for worker, count in liveness.reap(self.timeout, self.store_of()).items():
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

    def stopped(self, reason: str) -> None:
        """Record this worker stopped: the jobs still running on it end lost, ``reason`` said."""
        try:
            liveness.worker_stopped(self.worker, reason, self.store_of())
        except Exception:
            logger.exception("taskjobs: could not record the stop of worker %s", self.worker)
