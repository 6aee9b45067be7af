"""Writes that outlive a store outage, and optional batching.

Direct mode (the default): tracking writes go straight to the store while it answers; while it
does not, they queue in a bounded in-memory buffer that a background thread writes out, in
order, once the store is back. A task, a publish or the worker's main loop never waits for a
database that is down for longer than one connection attempt.

Batched mode: every write queues, and the background thread writes what has queued every few
milliseconds (or as soon as a batch is full) in one transaction, with the same statements and
so the same ordering guarantees. Faster, at a price: what is queued when a process is killed
is lost (a clean stop writes it out first).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from taskjobs.errors import StoreError

logger = logging.getLogger("taskjobs")

# Writes kept while the store is unreachable; past this, the oldest are dropped (and counted).
DEFAULT_CAPACITY = 10_000
# Seconds between two attempts to reach the store again: the first, and the longest.
FIRST_RETRY, LONGEST_RETRY = 0.5, 5.0
# Seconds a stopping process spends writing out what is still buffered.
DRAIN_TIMEOUT = 5.0
# Most writes in one transaction (a batch, or a buffer being written out after an outage).
BATCH_SIZE = 500
# Seconds a write waits in batched mode before its batch is written.
DEFAULT_BATCH_INTERVAL = 0.05


@dataclasses.dataclass(frozen=True)
class Write:
    """One tracking write, ready to run: what it is for, and the call that performs it."""

    task_id: str
    event: str
    perform: Callable[[], object]


@dataclasses.dataclass(frozen=True)
class Mode:
    """How this process writes: directly, or in batches every ``interval`` seconds."""

    batched: bool = False
    interval: float = DEFAULT_BATCH_INTERVAL


class Recorder:
    """Performs one store's tracking writes for this process, now or from a buffer."""

    def __init__(self, store: Any, capacity: int = DEFAULT_CAPACITY) -> None:
        self.store = store
        self.capacity = capacity
        self._reset()

    def _reset(self) -> None:
        self.buffer: collections.deque[Write] = collections.deque()
        self.lock = threading.Lock()
        self.kick = threading.Event()
        self.flusher: threading.Thread | None = None
        self.dropped = 0

    def after_fork(self) -> None:
        """A forked child starts empty: what the parent buffered, the parent writes."""
        self._reset()

    def submit(self, write: Write) -> None:
        """Perform ``write`` now, or queue it (batched mode, or the store is unreachable)."""
        with self.lock:
            if _mode.batched or self.buffer:  # in direct mode, a buffer means the store is down
                self._enqueue(write)
                if len(self.buffer) >= BATCH_SIZE:
                    self.kick.set()
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
                    exc, self.capacity,
                )  # fmt: skip

    def _enqueue(self, write: Write) -> None:
        """Queue ``write`` (lock held); drop the oldest write when full, saying so."""
        if len(self.buffer) >= self.capacity:
            lost = self.buffer.popleft()
            self.dropped += 1
            logger.error(
                "taskjobs: tracking buffer full (%d writes): dropped the %s of task %s; "
                "%d write(s) dropped since this process started",
                self.capacity, lost.event, lost.task_id, self.dropped,
            )  # fmt: skip
        self.buffer.append(write)
        if self.flusher is None or not self.flusher.is_alive():
            self.flusher = threading.Thread(target=self._flush, name="taskjobs-writer", daemon=True)
            self.flusher.start()

    def _flush(self) -> None:
        """Write the queue out, a batch per transaction, until it is empty (direct mode) or for
        the life of the process (batched mode); wait and retry while the store is down."""
        delay = FIRST_RETRY
        outage = not _mode.batched  # in direct mode, a queue exists only during an outage
        written = 0
        while True:
            if _mode.batched:
                self.kick.wait(_mode.interval)
                self.kick.clear()
            with self.lock:
                chunk = list(itertools.islice(self.buffer, BATCH_SIZE))
            if not chunk:
                if _mode.batched:
                    continue
                break
            try:
                self._perform(chunk)
            except StoreError as exc:  # only errors worth retrying get here
                if not outage:
                    written = 0
                    logger.warning("taskjobs: job store unreachable (%s); will retry", exc)
                outage = True
                self.kick.wait(delay)
                delay = min(delay * 2, LONGEST_RETRY)
                continue
            with self.lock:
                for write in chunk:
                    if self.buffer and self.buffer[0] is write:
                        self.buffer.popleft()
                empty = not self.buffer
            written += len(chunk)
            if outage and empty:
                logger.warning(
                    "taskjobs: job store reachable again; %d buffered write(s) written", written
                )
                outage = False
            delay = FIRST_RETRY

    def _perform(self, chunk: list[Write]) -> None:
        """Perform ``chunk`` in one transaction; if the store refuses one write, perform them
        one by one so that only that write is dropped (and logged)."""
        try:
            with self.store.batch():
                for write in chunk:
                    write.perform()
            return
        except StoreError as exc:
            if exc.retryable:
                raise
        except Exception:  # noqa: BLE001 - a bad write: find it below
            pass
        for write in chunk:
            try:
                write.perform()
            except StoreError as exc:
                if exc.retryable:
                    raise
                logger.error("taskjobs: dropped the %s of task %s: %s", write.event,
                             write.task_id, exc)  # fmt: skip
            except Exception:
                logger.exception("taskjobs: dropped the %s of task %s", write.event,
                                 write.task_id)  # fmt: skip

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> int:
        """Write out what is queued, for at most ``timeout`` seconds; returns how many writes
        are still queued (and so lost if the process exits now)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                left = len(self.buffer)
            if not left or time.monotonic() >= deadline:
                break
            self.kick.set()
            time.sleep(0.02)
        if left:
            logger.error(
                "taskjobs: %d tracking write(s) could not be written before this process "
                "stopped: the job store was unreachable",
                left,
            )
        return left


_mode = Mode()
# One recorder per store, so that writes bound for a store that answers never wait behind writes
# for one that does not.
_recorders: dict[int, Recorder] = {}
_recorders_lock = threading.Lock()


def set_mode(mode: Mode) -> None:
    """Write directly or in batches, in this process, from now on."""
    global _mode
    _mode = mode


def recorder_for(store: Any) -> Recorder:
    """The recorder of this process for ``store``."""
    found = _recorders.get(id(store))
    if found is None:
        with _recorders_lock:
            found = _recorders.setdefault(id(store), Recorder(store))
    return found


def drain_all(timeout: float = DRAIN_TIMEOUT) -> int:
    """Write out what every recorder queued, within ``timeout`` seconds; returns what is left."""
    return sum(recorder.drain(timeout) for recorder in list(_recorders.values()))


def _after_fork() -> None:
    for recorder in list(_recorders.values()):
        recorder.after_fork()


os.register_at_fork(after_in_child=_after_fork)
# A publisher or worker that exits normally writes out what it queued first.
atexit.register(drain_all)
