"""Throughput of taskjobs against Celery's own result backends and a ceiling.

    python bench/throughput.py [--tasks N] [--reps R] [--quick] [--clock end-to-end] [--group G]

Each measurement: a fresh scratch database, N ``bench.noop`` tasks published with no worker
running (by a publisher subprocess), then one ``celery worker`` subprocess started on the
queue. The clock starts at the worker's ``worker_ready`` signal (the moment Celery logs
``celery@host ready.``) and stops when a poll (every 50 ms) sees every task's final state where
the variant keeps it. With ``--clock end-to-end`` the worker runs first and the clock starts
at the publisher's first ``apply_async``: publisher and worker together, as a user meets them.
``--group G`` publishes ``group``s of G signatures instead of a loop. Variants are interleaved
within each repetition. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import signal
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    BROKER_URL,
    POLL_INTERVAL,
    RESULT_URL,
    RESULTS,
    ROOT,
    BenchmarkError,
    Database,
    NewKeys,
    Poller,
    Run,
    child_env,
    cleanup_redis,
    log_problems,
    machine_info,
    publish,
    raise_interrupt,
    record_end,
    rows,
    scalar,
    scratch,
    snapshot,
    start_worker,
    time_until_done,
    wait_ready,
    write_json,
)
from taskjobs.celery.launcher import Worker

PREFORK_CONCURRENCY = 2
POOLS = ("prefork", "solo")
# Extra conf of the variants with a Celery result backend, and of those without one.
TRACKING_CONF = {"task_track_started": True, "result_extended": True}
NO_RESULT_CONF = {"task_ignore_result": True}


@dataclasses.dataclass(frozen=True)
class Variant:
    key: str
    description: str
    database: str | None = None  # sqlite, postgresql, mariadb: the scratch database it needs
    backend: str | None = None  # celery-db, redis: Celery's result backend
    taskjobs: bool = False
    write_mode: str = "direct"  # taskjobs' write mode: direct, grouped or batched
    publish_mode: str = "sync"  # taskjobs' publish mode: sync or async

    @property
    def conf(self) -> dict[str, Any]:
        if self.backend:
            return TRACKING_CONF
        if self.taskjobs:
            return {**NO_RESULT_CONF, "taskjobs_write_mode": self.write_mode,
                    "taskjobs_publish_mode": self.publish_mode}  # fmt: skip
        return NO_RESULT_CONF


VARIANTS = (
    Variant("ceiling", "no result backend, task_ignore_result, no taskjobs"),
    Variant(
        "celery-db-postgresql", "Celery database backend on PostgreSQL", "postgresql", "celery-db"
    ),
    Variant("celery-db-sqlite", "Celery database backend on a SQLite file", "sqlite", "celery-db"),
    Variant("celery-redis", "Celery Redis result backend (db 11)", None, "redis"),
    Variant(
        "taskjobs-postgresql",
        "taskjobs on PostgreSQL, no result backend",
        "postgresql",
        taskjobs=True,
    ),
    Variant(
        "taskjobs-postgresql-async",
        "taskjobs on PostgreSQL, publishing off the caller's path",
        "postgresql",
        taskjobs=True,
        publish_mode="async",
    ),
    Variant(
        "taskjobs-sqlite", "taskjobs on a SQLite file, no result backend", "sqlite", taskjobs=True
    ),
    Variant("taskjobs-mariadb", "taskjobs on MariaDB, no result backend", "mariadb", taskjobs=True),
    Variant(
        "taskjobs-postgresql-batched",
        "taskjobs on PostgreSQL, batched write mode",
        "postgresql",
        taskjobs=True,
        write_mode="batched",
    ),
    Variant(
        "taskjobs-postgresql-batched-async",
        "taskjobs on PostgreSQL, batched write mode, publishing off the caller's path",
        "postgresql",
        taskjobs=True,
        write_mode="batched",
        publish_mode="async",
    ),
    Variant(
        "taskjobs-postgresql-grouped",
        "taskjobs on PostgreSQL, grouped write mode (a task's end committed before it returns)",
        "postgresql",
        taskjobs=True,
        write_mode="grouped",
    ),
    Variant(
        "taskjobs-sqlite-grouped",
        "taskjobs on a SQLite file, grouped write mode",
        "sqlite",
        taskjobs=True,
        write_mode="grouped",
    ),
    Variant(
        "taskjobs-sqlite-batched",
        "taskjobs on a SQLite file, batched write mode",
        "sqlite",
        taskjobs=True,
        write_mode="batched",
    ),
    Variant(
        "taskjobs-postgresql-default",
        "taskjobs on PostgreSQL as shipped: grouped writes, publishing off the caller's path",
        "postgresql",
        taskjobs=True,
        write_mode="grouped",
        publish_mode="async",
    ),
    Variant(
        "taskjobs-sqlite-default",
        "taskjobs on a SQLite file as shipped: grouped writes, publishing off the caller's path",
        "sqlite",
        taskjobs=True,
        write_mode="grouped",
        publish_mode="async",
    ),
    Variant(
        "taskjobs-mariadb-batched",
        "taskjobs on MariaDB, batched write mode",
        "mariadb",
        taskjobs=True,
        write_mode="batched",
    ),
)
BY_KEY = {variant.key: variant for variant in VARIANTS}
# (numerator, denominator) pairs reported as ratios of median tasks/s, within one pool.
RATIOS = (
    ("taskjobs-postgresql-default", "ceiling"),
    ("taskjobs-postgresql-default", "celery-db-postgresql"),
    ("taskjobs-postgresql-default", "celery-redis"),
    ("taskjobs-sqlite-default", "ceiling"),
    ("taskjobs-sqlite-default", "celery-db-sqlite"),
    ("taskjobs-postgresql", "ceiling"),
    ("taskjobs-sqlite", "ceiling"),
    ("taskjobs-mariadb", "ceiling"),
    ("taskjobs-postgresql", "celery-db-postgresql"),
    ("taskjobs-sqlite", "celery-db-sqlite"),
    ("taskjobs-postgresql-batched", "ceiling"),
    ("taskjobs-sqlite-batched", "ceiling"),
    ("taskjobs-mariadb-batched", "ceiling"),
    ("taskjobs-postgresql-batched", "celery-redis"),
    ("taskjobs-postgresql-batched", "celery-db-postgresql"),
    ("taskjobs-postgresql-grouped", "ceiling"),
    ("taskjobs-postgresql-grouped", "celery-db-postgresql"),
    ("taskjobs-postgresql-grouped", "taskjobs-postgresql"),
    ("taskjobs-sqlite-grouped", "celery-db-sqlite"),
    ("taskjobs-postgresql-async", "taskjobs-postgresql"),
    ("taskjobs-postgresql-async", "ceiling"),
    ("taskjobs-postgresql-async", "celery-db-postgresql"),
    ("taskjobs-postgresql-batched-async", "ceiling"),
    ("taskjobs-postgresql-batched-async", "celery-redis"),
)


# -- knowing when every task is done --------------------------------------------------------------


class CountPoller(Poller):
    """A ``count(*)`` of final rows in the variant's database, in autocommit (no snapshot)."""

    def __init__(self, url: str, sql: str, tasks: int) -> None:
        self.method = sql
        self.tasks = tasks
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.connection = self.engine.connect()
        self.statement = sa.text(sql)

    def done(self) -> bool:
        try:
            self.progress = int(self.connection.execute(self.statement).scalar_one())
        except sa.exc.OperationalError:  # SQLite busy beyond its timeout: count again later
            return False
        return self.progress >= self.tasks

    def close(self) -> None:
        self.connection.close()
        self.engine.dispose()


class RedisResultPoller(Poller):
    """Checks the ``celery-task-meta-<id>`` keys of the published ids, in publish order: the
    confirmed prefix only grows, so each poll reads one window of 500 keys past it (MGET)."""

    method = "MGET celery-task-meta-<id> for the published ids, status SUCCESS, window of 500"
    WINDOW = 500

    def __init__(self, client: redis.Redis, ids: list[str]) -> None:
        self.client = client
        self.ids = ids

    def done(self) -> bool:
        while self.progress < len(self.ids):
            window = self.ids[self.progress : self.progress + self.WINDOW]
            values = self.client.mget([f"celery-task-meta-{task_id}" for task_id in window])
            confirmed = 0
            for value in values:
                if value is None or json.loads(value).get("status") != "SUCCESS":
                    break
                confirmed += 1
            self.progress += confirmed
            if confirmed < len(window):
                return False
        return True


class CeilingPoller(Poller):
    """No result is stored anywhere, so ask the broker and the worker, never the task:
    the queue's list in Redis is empty (LLEN, no cost to the worker); only then the worker's
    ``inspect stats`` total of accepted ``bench.noop`` tasks equals N and ``inspect active``
    lists none (a task stays active until its result is back in the worker's main process)."""

    method = "LLEN queue == 0, then inspect stats total == N and inspect active empty"

    def __init__(self, broker: redis.Redis, queue: str, node: str, tasks: int) -> None:
        self.broker = broker
        self.queue = queue
        self.node = node
        self.tasks = tasks
        self.app = Celery("bench-control", broker=BROKER_URL, set_as_current=False)
        self.inspects = 0

    def _inspect(self, method: str) -> Any:
        self.inspects += 1
        inspect = self.app.control.inspect(destination=[self.node], timeout=1.0, limit=1)
        replies = getattr(inspect, method)() or {}
        return replies.get(self.node)

    def done(self) -> bool:
        if self.broker.llen(self.queue):
            return False
        stats = self._inspect("stats")
        if not stats:
            return False
        self.progress = int(stats.get("total", {}).get("bench.noop", 0))
        if self.progress < self.tasks:
            return False
        return bool(self._inspect("active") == [])

    def close(self) -> None:
        self.app.close()


# -- one measurement ------------------------------------------------------------------------------


def _poller(
    run: Run, variant: Variant, database: Database | None, ids: list[str], queue: str, node: str
) -> Poller:
    if variant.taskjobs:
        assert database is not None
        sql = "SELECT count(*) FROM taskjobs_jobs WHERE status = 'finished'"
        return CountPoller(database.sa_url, sql, run.tasks)
    if variant.backend == "celery-db":
        assert database is not None
        sql = "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'"
        return CountPoller(database.sa_url, sql, run.tasks)
    if variant.backend == "redis":
        return RedisResultPoller(run.results, ids)
    return CeilingPoller(run.broker, queue, node, run.tasks)


def _taskjobs_checks(database: Database, t_end: float) -> dict[str, Any]:
    """After the clock: is every job complete and its history whole? Where did time go?
    Plain SQL, so that the checks do not depend on the taskjobs code being measured."""
    url = database.sa_url
    statuses = dict(rows(url, "SELECT status, count(*) FROM taskjobs_jobs GROUP BY status"))
    transitions = dict(
        rows(url, "SELECT celery_state, count(*) FROM taskjobs_transitions GROUP BY celery_state")
    )
    missing = rows(
        url,
        "SELECT sum(CASE WHEN received_at IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN started_at IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN worker IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN runtime IS NULL THEN 1 ELSE 0 END)"
        " FROM taskjobs_jobs",
    )[0]
    jobs = rows(url, "SELECT started_at, finished_at, runtime, pid FROM taskjobs_jobs")
    spans, runtimes, last = [], [], None
    for started, finished, runtime, _pid in jobs:
        started, finished = _utc(started), _utc(finished)
        if started and finished:
            spans.append((finished - started).total_seconds())
        if runtime is not None:
            runtimes.append(float(runtime))
        if finished and (last is None or finished > last):
            last = finished
    return {
        "statuses": statuses,
        "transitions_by_celery_state": transitions,
        "missing": {
            key: int(value or 0)
            for key, value in zip(
                ("received_at", "started_at", "worker", "runtime"), missing, strict=True
            )
        },
        "pids": len({row[3] for row in jobs}),
        "median_started_to_finished_ms": _ms(spans),
        "median_runtime_ms": _ms(runtimes),
        # How long after the last job was finished the poll saw it (the clock's overshoot).
        "poll_lag_s": round(t_end - last.timestamp(), 4) if last else None,
    }


def _utc(value: Any) -> dt.datetime | None:
    """A naive-UTC time as the database returns it (SQLite: text) made aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    moment: dt.datetime = value
    return moment.replace(tzinfo=dt.timezone.utc)


def _ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 3) if values else None


def _env(run: Run, variant: Variant, queue: str, database: Database | None) -> dict[str, str]:
    backend = ""
    if variant.backend == "redis":
        backend = RESULT_URL
    elif variant.backend == "celery-db":
        assert database is not None
        backend = database.celery_url
    taskjobs_url = database.taskjobs_url if variant.taskjobs and database else ""
    return child_env(run, queue, backend, variant.conf, taskjobs_url)


def _check_snapshot(run: Run, imported: str | None, who: str) -> None:
    if imported is not None and not imported.startswith(str(run.src)):
        raise BenchmarkError(f"{who} imported taskjobs from {imported}, not the snapshot")


def measure(run: Run, variant: Variant, pool: str, rep: int) -> dict[str, Any]:
    tag = f"{variant.key}-{pool}-r{rep}"
    queue = f"bench-{run.run_id}-{tag}"
    node = f"bench-{run.run_id}-{tag}@{run.host}"
    result: dict[str, Any] = {"variant": variant.key, "pool": pool, "rep": rep, "tasks": run.tasks}
    ids: list[str] = []
    database_cm = (
        scratch(variant.database, run.tmp) if variant.database else contextlib.nullcontext()
    )
    try:
        with database_cm as database:
            env = _env(run, variant, queue, database)
            if run.clock == "end-to-end":
                _measure_end_to_end(run, variant, pool, result, env, database, ids,
                                    queue=queue, node=node)  # fmt: skip
                return result
            _publish(run, env, queue, ids, result)
            result["queued_before_start"] = run.broker.llen(queue)
            if result["queued_before_start"] != run.tasks:
                raise BenchmarkError(
                    f"{result['queued_before_start']} messages queued, not {run.tasks}"
                )
            if variant.taskjobs:
                assert database is not None
                pending = scalar(
                    database.sa_url, "SELECT count(*) FROM taskjobs_jobs WHERE status = 'pending'"
                )
                result["pending_jobs_before_start"] = pending
                if pending != run.tasks:
                    raise BenchmarkError(f"{pending} pending jobs before start, not {run.tasks}")
            poller = _poller(run, variant, database, ids, queue, node)
            worker = _start_worker(run, env, pool, queue, node)
            try:
                ready = wait_ready(worker)
                _check_snapshot(run, ready.get("taskjobs_file"), "worker")
                _time(run, variant, database, poller, worker, float(ready["at"]), result)
            finally:
                _stop(poller, worker, result)
    except BenchmarkError as exc:
        result["error"] = str(exc)
    finally:
        cleanup_redis(run, queue, ids)
    return result


def _measure_end_to_end(
    run: Run,
    variant: Variant,
    pool: str,
    result: dict[str, Any],
    env: dict[str, str],
    database: Database | None,
    ids: list[str],
    *,
    queue: str,
    node: str,
) -> None:
    """The worker consumes first; the clock runs from the publisher's first ``apply_async`` to
    the poll that sees every task's final state: publisher and worker together. The published
    ids are added to ``ids``."""
    worker = _start_worker(run, env, pool, queue, node)
    poller: Poller | None = None
    try:
        ready = wait_ready(worker)
        _check_snapshot(run, ready.get("taskjobs_file"), "worker")
        published = _publish(run, env, queue, ids, result)
        poller = _poller(run, variant, database, ids, queue, node)
        _time(run, variant, database, poller, worker, float(published["first_at"]), result)
    finally:
        _stop(poller, worker, result)


def _publish(
    run: Run, env: dict[str, str], queue: str, ids: list[str], result: dict[str, Any]
) -> dict[str, Any]:
    """Run the publisher: its ids added to ``ids``, its rate in ``result``; what it printed."""
    ids_file = run.tmp / f"{queue}.ids"
    published = publish(run, env, ids_file)
    ids.extend(ids_file.read_text().split())
    ids_file.unlink()
    _check_snapshot(run, published.get("taskjobs_file"), "publisher")
    result["publish_seconds"] = round(published["seconds"], 4)
    result["publish_rate"] = round(published["rate"], 1)
    # The publisher's CPU a publish (all its threads, the loop only): steadier than its rate
    # on a shared machine.
    result["publish_cpu_us"] = round(published["cpu_seconds"] / run.tasks * 1e6, 1)
    return published


def _start_worker(run: Run, env: dict[str, str], pool: str, queue: str, node: str) -> Worker:
    concurrency = PREFORK_CONCURRENCY if pool == "prefork" else None
    return start_worker(env, pool, queue, node, run.tmp, concurrency=concurrency)


def _time(
    run: Run,
    variant: Variant,
    database: Database | None,
    poller: Poller,
    worker: Worker,
    started: float,
    result: dict[str, Any],
) -> None:
    """Poll until every task is done; the clock from ``started`` (wall-clock time) into
    ``result``, then what the variant stored."""
    result["done_when"] = poller.method
    ended, polls = time_until_done(poller, worker, run.tasks)
    result["seconds"] = round(ended - started, 4)
    result["rate"] = round(run.tasks / (ended - started), 1)
    result["polls"] = polls
    if isinstance(poller, CeilingPoller):
        result["inspect_calls"] = poller.inspects
    if variant.taskjobs:
        assert database is not None
        result["checks"] = _taskjobs_checks(database, ended)
    elif variant.backend == "celery-db":
        assert database is not None
        sql = "SELECT status, count(*) FROM celery_taskmeta GROUP BY status"
        result["checks"] = {"statuses": dict(rows(database.sa_url, sql))}


def _stop(poller: Poller | None, worker: Worker, result: dict[str, Any]) -> None:
    if poller is not None:
        poller.close()
    result["worker_exit"] = worker.stop()
    result["worker_log"] = log_problems(worker)


def summarize(
    measurements: list[dict[str, Any]], variants: list[Variant], pools: list[str]
) -> dict[str, Any]:
    def rates(key: str, pool: str, field: str = "rate") -> list[float]:
        return [
            m[field]
            for m in measurements
            if m["variant"] == key
            and m["pool"] == pool
            and m.get(field) is not None
            and "error" not in m
        ]

    def by_rep(key: str, pool: str) -> dict[int, float]:
        return {
            m["rep"]: m["rate"]
            for m in measurements
            if m["variant"] == key and m["pool"] == pool and "error" not in m
        }

    table = []
    for variant in variants:
        for pool in pools:
            values = rates(variant.key, pool)
            publish = rates(variant.key, pool, "publish_rate")
            table.append(
                {
                    "variant": variant.key,
                    "pool": pool,
                    "runs": len(values),
                    "median": round(statistics.median(values), 1) if values else None,
                    "min": min(values, default=None),
                    "max": max(values, default=None),
                    "rates": values,
                    "publish_median": round(statistics.median(publish), 1) if publish else None,
                    "publish_min": min(publish, default=None),
                    "publish_max": max(publish, default=None),
                }
            )
    medians = {(row["variant"], row["pool"]): row["median"] for row in table}
    ratios = []
    keys = {variant.key for variant in variants}
    for numerator, denominator in RATIOS:
        if numerator not in keys or denominator not in keys:
            continue
        for pool in pools:
            top, bottom = medians[(numerator, pool)], medians[(denominator, pool)]
            assert top is None or isinstance(top, float)
            assert bottom is None or isinstance(bottom, float)
            tops, bottoms = by_rep(numerator, pool), by_rep(denominator, pool)
            paired = [tops[rep] / bottoms[rep] for rep in sorted(tops) if rep in bottoms]
            ratios.append(
                {
                    "numerator": numerator,
                    "denominator": denominator,
                    "pool": pool,
                    "ratio_of_medians": round(top / bottom, 3) if top and bottom else None,
                    "per_rep": [round(value, 3) for value in paired],
                    "per_rep_median": round(statistics.median(paired), 3) if paired else None,
                }
            )
    return {"table": table, "ratios": ratios}


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(summary: dict[str, Any]) -> str:
    publish_shown = {"ceiling"} | {v.key for v in VARIANTS if v.taskjobs}
    lines = [
        "| variant | pool | median tasks/s | range (min-max) | runs "
        "| publish tasks/s, median (range) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in summary["table"]:
        publish = (
            f"{_fmt(row['publish_median'])} ({_fmt(row['publish_min'])}-{_fmt(row['publish_max'])})"
            if row["variant"] in publish_shown and row["publish_median"] is not None
            else ""
        )
        lines.append(
            f"| {row['variant']} | {row['pool']} | {_fmt(row['median'])} "
            f"| {_fmt(row['min'])}-{_fmt(row['max'])} | {row['runs']} | {publish} |"
        )
    lines += [
        "",
        "| ratio (same pool) | pool | ratio of medians | per-repetition ratios (median) |",
        "|---|---|---:|---:|",
    ]
    for ratio in summary["ratios"]:
        per_rep = ", ".join(f"{value:.2f}" for value in ratio["per_rep"])
        lines.append(
            f"| {ratio['numerator']} / {ratio['denominator']} | {ratio['pool']} "
            f"| {_fmt(ratio['ratio_of_medians'], 2)} "
            f"| {per_rep} ({_fmt(ratio['per_rep_median'], 2)}) |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tasks", type=int, default=None, help="tasks per measurement (default 5000)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 tasks, 1 repetition")
    parser.add_argument(
        "--variants",
        default=",".join(BY_KEY),
        help="comma-separated subset of: " + ", ".join(BY_KEY),
    )
    parser.add_argument(
        "--pools", default=",".join(POOLS), help="comma-separated subset of prefork,solo"
    )
    parser.add_argument(
        "--task-log",
        action="store_true",
        help="keep Celery's per-task INFO log lines in the workers",
    )
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="measure taskjobs as the working tree has it now (default: the committed HEAD)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the worker logs (temp directory)"
    )
    parser.add_argument(
        "--clock",
        choices=("worker", "end-to-end"),
        default="worker",
        help="worker: publish all, then time the worker (default); end-to-end: the worker runs "
        "first, the clock starts at the first publish",
    )
    parser.add_argument(
        "--group",
        type=int,
        default=0,
        help="publish in groups of this many signatures (default 0: a loop of apply_async)",
    )
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (1000 if args.quick else 5000)
    args.reps = args.reps or (1 if args.quick else 3)
    args.variant_list = [BY_KEY[key.strip()] for key in args.variants.split(",") if key.strip()]
    args.pool_list = [pool.strip() for pool in args.pools.split(",") if pool.strip()]
    if any(pool not in POOLS for pool in args.pool_list):
        parser.error(f"pools are {', '.join(POOLS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)
    started_at = dt.datetime.now(dt.timezone.utc)
    run_id = uuid.uuid4().hex[:8]
    output = RESULTS / f"throughput-{started_at:%Y%m%dT%H%M%SZ}.json"
    tmp = Path(tempfile.mkdtemp(prefix=f"taskjobs-bench-{run_id}-"))
    broker = redis.Redis.from_url(BROKER_URL)
    results = redis.Redis.from_url(RESULT_URL)
    broker_keys, result_keys = NewKeys(broker), NewKeys(results)
    try:
        code = snapshot(tmp / "src", args.worktree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    run = Run(run_id, args.tasks, tmp, broker, results, args.task_log, tmp / "src",
              clock=args.clock, group=args.group)  # fmt: skip
    data: dict[str, Any] = {
        "command": " ".join(
            ["python", "bench/throughput.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "started_at": started_at.isoformat(),
        "run_id": run_id,
        "settings": {
            "tasks": args.tasks,
            "reps": args.reps,
            "quick": args.quick,
            "pools": args.pool_list,
            "prefork_concurrency": PREFORK_CONCURRENCY,
            "variants": {
                v.key: {"description": v.description, "conf": v.conf} for v in args.variant_list
            },
            "broker": BROKER_URL,
            "result_backend_redis": RESULT_URL,
            "poll_interval_s": POLL_INTERVAL,
            "per_task_log_lines": args.task_log,
            "clock": (
                "starts at the publisher's first apply_async, the worker already consuming; "
                "stops when a poll sees every task's final state"
                if args.clock == "end-to-end"
                else "starts at the worker's worker_ready signal (Celery logs 'ready.' right "
                "after); stops when a poll sees every task's final state"
            ),
            "group": args.group,
        },
        "machine": machine_info(),
        "code": code,
        "measurements": [],
        "completed": False,
    }
    if args.reps < 3 and not args.quick:
        print(
            f"warning: {args.reps} repetition(s); the benchmark is meant for at least 3",
            file=sys.stderr,
        )
    total = args.reps * len(args.variant_list) * len(args.pool_list)
    source = code["source"]
    if args.worktree and code["uncommitted_taskjobs_changes"]:
        source += " (with uncommitted changes)"
    print(
        f"run {run_id}: {args.tasks} tasks x {total} measurements, taskjobs from {source}, "
        f"logs in {tmp}",
        flush=True,
    )
    failed = False
    try:
        count = 0
        for rep in range(1, args.reps + 1):
            # Interleaved: every variant once per repetition, the order rotated by one each time.
            shift = (rep - 1) % len(args.variant_list)
            order = args.variant_list[shift:] + args.variant_list[:shift]
            for variant in order:
                for pool in args.pool_list:
                    count += 1
                    measurement = measure(run, variant, pool, rep)
                    data["measurements"].append(measurement)
                    problems = measurement.get("worker_log", {}).get("problem_lines", 0)
                    status = (
                        f"ERROR {measurement['error'][:300]}"
                        if "error" in measurement
                        else f"{measurement['rate']:>8.1f} tasks/s in {measurement['seconds']:.2f}s"
                    )
                    print(
                        f"[{count}/{total}] rep {rep} {variant.key:<22} {pool:<8}{status}"
                        f"  publish {measurement.get('publish_rate', 0):>7.1f}/s"
                        + (f"  ({problems} warning/error lines in worker log)" if problems else ""),
                        flush=True,
                    )
                    failed = failed or "error" in measurement
        data["completed"] = True
    except KeyboardInterrupt:
        print("interrupted: stopping workers and dropping databases", file=sys.stderr)
        failed = True
    finally:
        data["redis_keys_cleaned_at_end"] = {
            "broker_db": broker_keys.delete(),
            "result_db": result_keys.delete(),
        }
        record_end(data)
        summary = summarize(data["measurements"], args.variant_list, args.pool_list)
        data.update(summary)
        write_json(output, data)
        if not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(render(summary))
    print(f"\nresults: {output.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
