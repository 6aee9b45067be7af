"""Running aggregates: the report's and the metrics' figures, kept per time bucket so that
reading them costs what the buckets of the window cost, not what its jobs cost.

The database logs each change of a job's figures itself (``tables.stat_log``: the job's
values before and after it, written by triggers on every insert, delete and relevant update,
see migration 0011). ``fold`` moves a batch of those changes into ``tables.stats``, which
holds, per bucket of each width and per kind of figure (``KINDS``), a count of jobs and the sum
of a value: the values before count -1, the values after +1. A reader adds the changes not yet
folded to what is, in one snapshot, so the figures are exact whenever they are read, folded or
not.

Each job counts in the buckets of the minute, ten minutes, hour and four hours it was created
in (the kinds ``STATE``, ``WORKER``, ``EXCEPTION``, ``RUNTIME``, ``WAIT``), in the minute it
ended (``ENDED``), or in all time (``STATE`` again, ``FAILURE``). A window is read as whole
four hours, then whole hours, ten minutes and minutes at its edges (``cover``): its edges are
taken to the minute, the start down and the end up.

The widths are the fold's and the log's contract together: a fold of a release that did not
know a width would leave it short of what it folded, for good. So a change of ``WIDTHS`` comes
with a new log table, which the older release's folds do not read (migration 0011).

Durations (``RUNTIME``, ``WAIT``) are counted per bin of ``histogram``, labelled by its bound.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from taskjobs.model import CELERY_LOST, ERROR, FINISHED, RUNNING
from taskjobs.store import dialects
from taskjobs.store.histogram import bin_label
from taskjobs.store.tables import STAT_FIGURES, stat_log, stats

# The widths of the buckets, in seconds, widest first; 0 is the one bucket of all time.
WIDTHS = (14400, 3600, 600, 60)
ALL_TIME = 0
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The kinds of figure, each with what its ``name`` and ``label`` hold and what ``total`` sums.
STATE = "state"  # task name, status; retries. Created-at buckets and all time.
WORKER = "worker"  # worker, status. Created-at buckets, jobs with a worker.
EXCEPTION = "exception"  # task name, exception class. Created-at buckets, jobs with one.
FAILURE = "failure"  # task name, exception class or Celery state; jobs lost. All time, errors.
RUNTIME = "runtime"  # task name, bin; seconds run. Created-at buckets, jobs with one.
WAIT = "wait"  # task name, bin; seconds waited. Created-at buckets, started jobs.
ENDED = "ended"  # "", status. Minute buckets of the end, finished and error jobs.
KINDS = (STATE, WORKER, EXCEPTION, FAILURE, RUNTIME, WAIT, ENDED)

# The statuses of a job that started its current attempt (a pending retry keeps an old start).
STARTED = frozenset({RUNNING, FINISHED, ERROR})
# Changes one fold moves at most, in one transaction.
FOLD_BATCH = 10_000
# Database-wide lock that lets one process at a time fold (see ``dialects.try_lock``).
FOLD_LOCK = 0x7461736B666F6C64  # "taskfold"
FOLD_LOCK_NAME = "taskjobs_fold"
# Ids deleted per statement.
_DELETE_CHUNK = 1000

# (width, bucket start, kind, name, label)
Key = tuple[int, datetime, str, str, str]


def bucket_start(at: datetime, width: int) -> datetime:
    """The start of the bucket of ``width`` seconds that holds ``at``."""
    if width == ALL_TIME:
        return EPOCH
    seconds = int((at - EPOCH).total_seconds() // width) * width
    return EPOCH + timedelta(seconds=seconds)


# What a side of a change counts in, but for its bucket widths: (kind, name, label, sign,
# minute, widths), ``minute`` the one it counts from (since the epoch) in each of ``widths``.
Part = tuple[str, str, str, int, int, tuple[int, ...]]
_EVER = (0, (ALL_TIME,))


def parts(change: Mapping[str, Any]) -> Iterator[tuple[Part, float]]:
    """What one side of a logged change counts in, each part with the total it adds. A part
    spans buckets of several widths, and many sides share one (a busy minute of one task):
    they are added up as parts first, then spread over their buckets (``expand_part``)."""
    sign = int(change["sign"])
    name = change["name"] or ""
    status = change["status"]
    created = change["created_at"]
    at_creation = (_minute(created), WIDTHS)
    retries = change["retries"] or 0
    yield (STATE, name, status, sign, *at_creation), retries
    yield (STATE, name, status, sign, *_EVER), retries
    if change["worker"] is not None:
        yield (WORKER, change["worker"], status, sign, *at_creation), 0.0
    if change["exc_type"] is not None:
        yield (EXCEPTION, name, change["exc_type"], sign, *at_creation), 0.0
    if status == ERROR:
        exception = change["exc_type"] or change["celery_state"] or ""
        lost = 1.0 if change["celery_state"] == CELERY_LOST else 0.0
        yield (FAILURE, name, exception, sign, *_EVER), lost
    runtime = change["runtime"]
    if status in STARTED and runtime is not None:
        yield (RUNTIME, name, bin_label(runtime), sign, *at_creation), runtime
    if status in STARTED and change["started_at"] is not None:
        # From the ETA when there is one and it is later than the publish.
        eta = change["eta"]
        since = eta if eta is not None and eta > created else created
        wait = max((change["started_at"] - since).total_seconds(), 0.0)
        yield (WAIT, name, bin_label(wait), sign, *at_creation), wait
    if status in (FINISHED, ERROR) and change["finished_at"] is not None:
        yield (ENDED, "", status, sign, _minute(change["finished_at"]), (60,)), 0.0


def expand_part(part: Part, count: int, total: float) -> Iterator[tuple[Key, int, float]]:
    """What ``count`` sides that count in ``part`` add, ``total`` the sum of their values:
    (key, jobs, total) for each of its buckets."""
    kind, name, label, sign, minute, widths = part
    for width in widths:
        start = EPOCH + timedelta(minutes=minute - minute % (width // 60)) if width else EPOCH
        yield (width, start, kind, name, label), sign * count, sign * total


def _minute(at: datetime) -> int:
    """The minute of ``at``, counted from the epoch."""
    return int(at.timestamp() // 60)


def expand(change: Mapping[str, Any]) -> Iterator[tuple[Key, int, float]]:
    """What one side of a logged change adds to the aggregates: (key, jobs, total) for every
    bucket and kind it counts in."""
    for part, total in parts(change):
        yield from expand_part(part, 1, total)


class ConcurrentFoldError(Exception):
    """Another fold moved some of the changes this one read: its transaction must roll back."""


def fold(connection: sa.Connection, limit: int = FOLD_BATCH) -> int:
    """Move up to ``limit`` logged changes, oldest first, into the aggregates; returns how many
    moved (0 as well when another process is folding). ``connection`` is in a write
    transaction; ``ConcurrentFoldError`` means it must be rolled back (nothing of it counts)."""
    dialect = connection.dialect.name
    with dialects.try_lock(connection, key=FOLD_LOCK, name=FOLD_LOCK_NAME) as held:
        if not held:
            return 0
        changes = _take(connection, limit)
        if not changes:
            return 0
        sums = add_up(changes)
        rows = [
            {"width": w, "bucket_start": b, "kind": k, "name": n, "label": label,
             "jobs": jobs, "total": total}
            for (w, b, k, n, label), (jobs, total) in sums.items()
            if jobs or total
        ]  # fmt: skip
        if rows:
            batched = dialects.json_batches(dialect)
            connection.execute(_upsert(dialect), dialects.batch_of(rows) if batched else rows)
            emptied = [row for row in rows if row["jobs"] < 0]
            if emptied:
                connection.execute(_delete_empty(), emptied)
        return len(changes)


def _take(connection: sa.Connection, limit: int) -> list[sa.RowMapping]:
    """Delete the oldest ``limit`` logged changes, and return them."""
    if dialects.deletes_returning(connection.dialect):
        # One statement, which the fold lock keeps from racing another fold's. Its id list,
        # bound in the statement otherwise, cost more Python than the rest of a live fold.
        oldest = sa.select(stat_log.c.id).order_by(stat_log.c.id).limit(limit)
        taken = sa.delete(stat_log).where(stat_log.c.id.in_(oldest.scalar_subquery()))
        return list(connection.execute(taken.returning(*stat_log.c)).mappings())
    query = sa.select(stat_log).order_by(stat_log.c.id).limit(limit)
    changes = list(connection.execute(query).mappings())
    # The changes are deleted first: a fold that deletes fewer than it read raced another
    # one for them and must not count them. MySQL lets that happen: its lock is released
    # before the commit, so the next fold may read what this one deleted but has not
    # committed yet (its DELETE then waits for this commit and finds them gone).
    ids = [change["id"] for change in changes]
    deleted = 0
    for start in range(0, len(ids), _DELETE_CHUNK):
        chunk = ids[start : start + _DELETE_CHUNK]
        found = connection.execute(sa.delete(stat_log).where(stat_log.c.id.in_(chunk)))
        deleted += found.rowcount
    if deleted != len(ids):
        raise ConcurrentFoldError(
            f"{len(ids) - deleted} of {len(ids)} changes were folded by another"
        )
    return changes


def sides(change: Mapping[Any, Any]) -> Iterator[dict[str, Any]]:
    """The figures a logged change (a row of ``stat_log``) takes away and adds: the job's
    before it with sign -1, after it with sign +1; an insert has no before, a delete no after."""
    for prefix, sign in (("old_", -1), ("new_", 1)):
        if change[f"{prefix}status"] is not None:
            yield {"sign": sign, **{figure: change[prefix + figure] for figure in STAT_FIGURES}}


def add_up(changes: Iterable[Mapping[Any, Any]]) -> dict[Key, list[Any]]:
    """The sums of jobs and totals per key that ``changes`` (rows of ``stat_log``) add."""
    added: dict[Part, list[Any]] = {}  # part -> [sides, total]
    for change in changes:
        for side in sides(change):
            for part, total in parts(side):
                entry = added.get(part)
                if entry is None:
                    added[part] = [1, total]
                else:
                    entry[0] += 1
                    entry[1] += total
    sums: dict[Key, list[Any]] = defaultdict(lambda: [0, 0.0])
    for part, (count, total) in added.items():
        for key, jobs, signed in expand_part(part, count, total):
            entry = sums[key]
            entry[0] += jobs
            entry[1] += signed
    return sums


@functools.cache
def _upsert(dialect: str) -> Any:
    """The statement that adds a fold's sums to the aggregates, for all its rows at once (on
    PostgreSQL bound as one JSON parameter, see ``dialects.json_batches``)."""
    columns = ("width", "bucket_start", "kind", "name", "label", "jobs", "total")
    values: Mapping[str, Any] | sa.Select[Any]
    if dialects.json_batches(dialect):
        values = sa.select(dialects.unnested(stats, columns))
    else:
        values = {column: sa.bindparam(column, type_=stats.c[column].type) for column in columns}
    return dialects.upsert(
        dialect,
        stats,
        values,
        ("width", "bucket_start", "kind", "name", "label"),
        lambda new: [
            ("jobs", stats.c.jobs + new["jobs"]),
            ("total", stats.c.total + new["total"]),
        ],
    )


def _delete_empty() -> Any:
    """The DELETE of a bucket's row once no job counts in it."""
    c = stats.c
    match = [c[column] == sa.bindparam(column, type_=c[column].type)
             for column in ("width", "bucket_start", "kind", "name", "label")]  # fmt: skip
    return sa.delete(stats).where(*match, c.jobs == 0)


@dataclasses.dataclass(frozen=True)
class Backlog:
    """The logged changes no fold has moved yet: how many, and the sums they add per key."""

    count: int
    sums: Mapping[Key, list[Any]]


def backlog(connection: sa.Connection) -> Backlog:
    """Every logged change not yet folded, added up once for all the reads of one snapshot."""
    changes = list(connection.execute(sa.select(stat_log)).mappings())
    return Backlog(len(changes), add_up(changes))


def to_minutes(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """[since, until) widened to whole minutes: the start down, the end up."""
    end = bucket_start(until, 60)
    return bucket_start(since, 60), end if end >= until else end + timedelta(minutes=1)


def cover(since: datetime, until: datetime) -> list[tuple[int, datetime, datetime]]:
    """The buckets that make up [since, until), its edges taken to the minute (the start down,
    the end up): (width, first bucket start, end) ranges, the widest buckets first."""
    start, end = to_minutes(since, until)
    ranges: list[tuple[int, datetime, datetime]] = []

    def split(low: datetime, high: datetime, widths: Sequence[int]) -> None:
        if low >= high:
            return
        width, narrower = widths[0], widths[1:]
        first = bucket_start(low, width)
        if first < low:
            first += timedelta(seconds=width)
        last = bucket_start(high, width)
        if not narrower:
            ranges.append((width, low, high))
        elif first < last:
            ranges.append((width, first, last))
            split(low, first, narrower)
            split(last, high, narrower)
        else:
            split(low, high, narrower)

    split(start, end, WIDTHS)
    return ranges


class Figures:
    """The aggregates of some kinds over some buckets: the folded sums plus the logged changes
    not yet folded, read in one snapshot."""

    def __init__(
        self,
        connection: sa.Connection,
        kinds: Sequence[str],
        ranges: Sequence[tuple[int, datetime, datetime]],
        unfolded: Backlog,
    ) -> None:
        # kind -> (name, label) -> [jobs, total]
        self.sums: dict[str, dict[tuple[str, str], list[Any]]] = {kind: {} for kind in kinds}
        if ranges and kinds:
            query = _figures_query(tuple(kinds), tuple(width for width, _, _ in ranges))
            edges = {f"{side}_{i}": at for i, (_, start, end) in enumerate(ranges)
                     for side, at in (("start", start), ("end", end))}  # fmt: skip
            # The statement adds up per kind and key: each row is a key of its own.
            for kind, name, label, jobs, total in connection.execute(query, edges):
                self.sums[kind][(name, label)] = [int(jobs), float(total)]
        for (width, start, kind, name, label), (jobs, total) in unfolded.sums.items():
            if kind in self.sums and any(w == width and a <= start < b for w, a, b in ranges):
                entry = self.sums[kind].setdefault((name, label), [0, 0.0])
                entry[0] += jobs
                entry[1] += total

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        """(name, label, jobs, total) of one kind, for the keys with jobs."""
        found = self.sums.get(kind, {})
        return [(*key, jobs, total) for key, (jobs, total) in found.items() if jobs]


@functools.lru_cache(maxsize=64)
def _figures_query(kinds: tuple[str, ...], widths: tuple[int, ...]) -> sa.CompoundSelect[Any]:
    """The SELECT of ``kinds``' sums over ranges of buckets of ``widths``, the ``i``-th range
    bound to the parameters ``start_i`` and ``end_i``. Built once per shape (a window's cover
    has few): building such a statement and its cache key took longer than the database's
    reading of it on small stores."""
    bounds = [(sa.bindparam(f"start_{i}", type_=stats.c.bucket_start.type),
               sa.bindparam(f"end_{i}", type_=stats.c.bucket_start.type))
              for i in range(len(widths))]  # fmt: skip
    ranges = [(width, start, end) for width, (start, end) in zip(widths, bounds, strict=True)]
    return sa.union_all(*(_added_up(kind, ranges) for kind in kinds))


def _added_up(kind: str, ranges: Sequence[tuple[int, Any, Any]]) -> sa.Select[Any]:
    """The SELECT of one kind's sums over ``ranges``, each a range of the primary key, which
    holds the figures too (migration 0008); added up per kind, each group is smaller to sort
    (SQLite) or hash (PostgreSQL) than all kinds' together."""
    c = stats.c
    columns = [c.name, c.label]
    parts = [
        sa.select(*columns, c.jobs, c.total).where(
            c.kind == kind, c.width == width, c.bucket_start >= start, c.bucket_start < end
        )
        for width, start, end in ranges
    ]
    rows = sa.union_all(*parts).subquery()
    keys = [rows.c[column.name] for column in columns]
    # A bucket's count fits in 32 bits (2**31 jobs of one task in four hours would be 149,000
    # a second); all time's need not.
    in_buckets = all(width != ALL_TIME for width, _, _ in ranges)
    counted = dialects.count_sum(rows.c.jobs) if in_buckets else sa.func.sum(rows.c.jobs)
    sums = (counted, sa.func.sum(rows.c.total))
    return sa.select(sa.literal(kind, sa.String), *keys, *sums).group_by(*keys)


def ended(
    connection: sa.Connection, since: datetime, until: datetime, width: int, unfolded: Backlog
) -> dict[tuple[int, str], int]:
    """The jobs that ended (finished or error) in [since, until), both on a minute, per
    (bucket, status), bucket ``n`` covering the ``n``-th ``width`` seconds (whole minutes) from
    ``since``. The database adds the minutes up into buckets: a day's timeline is some
    hundred rows to read instead of 2,880."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    edges = {"since": since, "until": until, "width": width}
    for bucket, status, jobs in connection.execute(_ended_query(), edges):
        counts[(int(bucket), status)] += int(jobs)
    for (bucket_width, start, kind, _, status), (jobs, _) in unfolded.sums.items():
        if kind == ENDED and bucket_width == 60 and since <= start < until:
            counts[(int((start - since).total_seconds()) // width, status)] += jobs
    return counts


@functools.cache
def _ended_query() -> sa.Select[Any]:
    c = stats.c
    since = sa.bindparam("since", type_=c.bucket_start.type)
    until = sa.bindparam("until", type_=c.bucket_start.type)
    bucket = dialects.buckets_since(c.bucket_start, since, sa.bindparam("width", type_=sa.Integer))
    rows = (
        sa.select(bucket.label("bucket"), c.label, c.jobs)
        .where(c.kind == ENDED, c.width == 60, c.bucket_start >= since, c.bucket_start < until)
        .subquery()
    )
    return sa.select(rows.c.bucket, rows.c.label, dialects.count_sum(rows.c.jobs)).group_by(
        rows.c.bucket, rows.c.label
    )
