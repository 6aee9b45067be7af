"""The fork gate: a process forks only between its SQLite transactions.

SQLite keeps the locks of a database file in memory shared by every connection of the process,
and ``fork()`` copies that memory. A child forked while another thread of its parent is inside
a transaction inherits a lock it does not hold, and can never write to that database: every
write of its waits out the busy timeout, then fails with "database is locked". Celery's prefork
pool forks a new child whenever one dies, at any moment, while the writer threads and the
heartbeat of the worker's main process are writing.

So each SQLite transaction passes through the gate, and a fork waits (at most ``FORK_WAIT``
seconds) until none is open in another thread, and lets no new one begin until it is done.
Server databases need none of this: a child never touches the connections it inherits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("taskjobs")

# Seconds a fork waits for the transactions open in other threads before it goes on anyway.
FORK_WAIT = 5.0


class ForkGate:
    """Counts the transactions open in this process; holds a fork while any is."""

    def __init__(self) -> None:
        self._reset(0)
        self._mine = threading.local()

    def _reset(self, open_: int) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._open = open_
        # Set while a fork waits: no transaction begins until it is done.
        self._forking = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Around one transaction: it does not begin while a fork is under way, and a fork
        waits for it to end."""
        with self._condition:
            while self._forking:
                self._condition.wait()
            self._open += 1
        self._mine.open = getattr(self._mine, "open", 0) + 1
        try:
            yield
        finally:
            self._mine.open -= 1
            with self._condition:
                self._open -= 1
                if not self._open:
                    self._condition.notify_all()

    def before_fork(self) -> None:
        """Wait until no other thread has a transaction open, and hold new ones back."""
        self._condition.acquire()
        self._forking = True
        others = self._open - getattr(self._mine, "open", 0)
        deadline = time.monotonic() + FORK_WAIT
        while others > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning(
                    "taskjobs: forking while %d SQLite transaction(s) of other threads are "
                    "still open after %.0f s; the child may not be able to write to SQLite",
                    others, FORK_WAIT,
                )  # fmt: skip
                return
            self._condition.wait(left)
            others = self._open - getattr(self._mine, "open", 0)

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._condition.notify_all()
        self._condition.release()

    def after_fork_in_child(self) -> None:
        """The child has only the forking thread, and that thread's open transactions."""
        self._reset(getattr(self._mine, "open", 0))


GATE = ForkGate()
os.register_at_fork(
    before=GATE.before_fork,
    after_in_parent=GATE.after_fork_in_parent,
    after_in_child=GATE.after_fork_in_child,
)
