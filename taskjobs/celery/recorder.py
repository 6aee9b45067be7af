"""Writes that outlive a store outage: tracking writes go straight to the store while it answers;
while it does not, they queue in a bounded in-memory buffer that a background thread writes out,
in order, once the store is back. A task, a publish or the worker's main loop never waits for a
database that is down for longer than one connection attempt.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from taskjobs.errors import StoreError

logger = logging.getLogger("taskjobs")

# Writes kept while the store is unreachable; past this, the oldest are dropped (and counted).
DEFAULT_CAPACITY = 10_000
# Seconds between two attempts to reach the store again: the first, and the longest.
FIRST_RETRY, LONGEST_RETRY = 0.5, 5.0
# Seconds a stopping process spends writing out what is still buffered.
DRAIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Write:
    """One tracking write, ready to run: what it is for, and the call that performs it."""

    task_id: str
    event: str
    perform: Callable[[], object]


class Recorder:
    """Performs writes now if it can, else buffers them; one per process."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._reset()

    def _reset(self) -> None:
        self.buffer: collections.deque[Write] = collections.deque()
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.flusher: threading.Thread | None = None
        self.dropped = 0
        self.buffered = 0

    def after_fork(self) -> None:
        """A forked child starts empty: what the parent buffered, the parent writes."""
        self._reset()

    def submit(self, write: Write) -> None:
        """Perform ``write`` now, or buffer it while the store is unreachable."""
        with self.lock:
            if self.buffer:  # keep order: the store is known to be down
                self._enqueue(write)
                return
        try:
            write.perform()
        except StoreError as exc:
            if not exc.retryable:
                raise
            with self.lock:
                first = not self.buffer
                self._enqueue(write)
            if first:
                logger.warning(
                    "taskjobs: job store unreachable (%s); buffering tracking writes in memory "
                    "(at most %d) until it is back",
                    exc,
                    self.capacity,
                )

    def _enqueue(self, write: Write) -> None:
        """Buffer ``write`` (lock held); drop the oldest write when full, saying so."""
        if len(self.buffer) >= self.capacity:
            lost = self.buffer.popleft()
            self.dropped += 1
            logger.error(
                "taskjobs: tracking buffer full (%d writes): dropped the %s of task %s; "
                "%d write(s) dropped since this process started",
                self.capacity,
                lost.event,
                lost.task_id,
                self.dropped,
            )
        self.buffer.append(write)
        self.buffered += 1
        if self.flusher is None or not self.flusher.is_alive():
            self.flusher = threading.Thread(
                target=self._flush_until_empty, name="taskjobs-flusher", daemon=True
            )
            self.flusher.start()

    def _flush_until_empty(self, deadline: float | None = None) -> None:
        delay = FIRST_RETRY
        written = 0
        while True:
            with self.lock:
                if not self.buffer:
                    break
                write = self.buffer[0]
            try:
                write.perform()
            except StoreError as exc:
                if exc.retryable:
                    if self.wakeup.wait(delay):
                        return  # draining was asked for and gave up
                    delay = min(delay * 2, LONGEST_RETRY)
                    continue
                logger.error(
                    "taskjobs: dropped the %s of task %s: %s", write.event, write.task_id, exc
                )
            except Exception:
                logger.exception("taskjobs: dropped the %s of task %s", write.event, write.task_id)
            with self.lock:
                if self.buffer and self.buffer[0] is write:
                    self.buffer.popleft()
            written += 1
            delay = FIRST_RETRY
        if written:
            logger.warning(
                "taskjobs: job store reachable again; %d buffered write(s) written", written
            )

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> int:
        """Try to write out what is buffered, for at most ``timeout`` seconds; returns how many
        writes are still buffered (and so lost if the process exits now)."""
        flusher = self.flusher
        if flusher is not None and flusher.is_alive():
            flusher.join(timeout)
        with self.lock:
            left = len(self.buffer)
        if left:
            logger.error(
                "taskjobs: %d tracking write(s) could not be written before this process "
                "stopped: the job store was unreachable",
                left,
            )
        return left


# One recorder per store, so that writes bound for a store that answers never wait behind writes
# for one that does not.
_recorders: dict[int, Recorder] = {}
_recorders_lock = threading.Lock()


def recorder_for(store: object) -> Recorder:
    """The recorder of this process for ``store``."""
    found = _recorders.get(id(store))
    if found is None:
        with _recorders_lock:
            found = _recorders.setdefault(id(store), Recorder())
    return found


def drain_all(timeout: float = DRAIN_TIMEOUT) -> int:
    """Write out what every recorder buffered, within ``timeout`` seconds; returns what is left."""
    return sum(recorder.drain(timeout) for recorder in list(_recorders.values()))


def _after_fork() -> None:
    for recorder in list(_recorders.values()):
        recorder.after_fork()


os.register_at_fork(after_in_child=_after_fork)
# A publisher or worker that exits normally writes out what it buffered first.
atexit.register(drain_all)
