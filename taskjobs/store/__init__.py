"""The job store: the only code that builds SQL. One transaction per call, own errors only.

``Store`` (``store.store``) owns the engine, the transactions and the errors; the SQL lives in a
module per concept: ``writes`` (single-statement writes and the order guard), ``reads``,
``workers`` (heartbeats, reaping, presumed ends), ``deletes``, ``aggregates`` (the report's
figures), with what differs between databases in ``dialects``, and the schema in ``tables``,
``schema`` and ``migrations``. Reads return the frozen records of ``taskjobs.model`` and
``records``; readers and writers type against the protocols of ``protocol``.
"""

from __future__ import annotations

from taskjobs.store.engine import make_fork_safe
from taskjobs.store.protocol import JobReader, JobStore
from taskjobs.store.records import SORTABLE, JobQuery, Transition, Worker
from taskjobs.store.store import Store, store_for

__all__ = [
    # the store of a database
    "Store",
    "store_for",
    "make_fork_safe",
    # what readers and writers need of a store
    "JobReader",
    "JobStore",
    # what to read, and the records reads return, besides taskjobs.Job
    "JobQuery",
    "SORTABLE",
    "Transition",
    "Worker",
]
