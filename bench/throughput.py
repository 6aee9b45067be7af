"""Worker-side throughput of taskjobs against Celery's own result backends and a ceiling.

    python bench/throughput.py [--tasks N] [--reps R] [--quick]

Each measurement: a fresh scratch database, N ``bench.noop`` tasks published with no worker
running (by a publisher subprocess), then one ``celery worker`` subprocess started on the
queue. The clock starts at the worker's ``worker_ready`` signal (the moment Celery logs
``celery@host ready.``) and stops when a poll (every 50 ms) sees every task's final state where
the variant keeps it. Variants are interleaved within each repetition. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"

REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
# Redis databases: 12 for the broker, 11 for Celery's Redis result backend. The test suite
# uses 13, 14 and 15; the benchmark never touches them.
BROKER_DB, RESULT_DB = 12, 11
BROKER_URL = f"{REDIS_URL}/{BROKER_DB}"
RESULT_URL = f"{REDIS_URL}/{RESULT_DB}"
# Admin URLs of the database servers: scratch databases are created and dropped from these.
POSTGRES_ADMIN = os.environ.get(
    "BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN = os.environ.get("BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/mysql")

POLL_INTERVAL = 0.05
WORKER_READY_TIMEOUT = 60
WORKER_STOP_TIMEOUT = 30
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
    write_mode: str = "direct"  # taskjobs' write mode: direct or batched

    @property
    def conf(self) -> dict[str, Any]:
        if self.backend:
            return TRACKING_CONF
        if self.taskjobs:
            return {**NO_RESULT_CONF, "taskjobs_write_mode": self.write_mode}
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
        "taskjobs-sqlite-batched",
        "taskjobs on a SQLite file, batched write mode",
        "sqlite",
        taskjobs=True,
        write_mode="batched",
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
)


class BenchmarkError(RuntimeError):
    """A measurement that could not be completed."""


# -- scratch databases ----------------------------------------------------------------------------


@dataclasses.dataclass
class Database:
    kind: str
    name: str
    sa_url: str  # for SQLAlchemy (driver named): polling and checks
    taskjobs_url: str  # as a taskjobs user writes it
    celery_url: str  # Celery's database backend


class Scratch:
    """Creates and drops the run's scratch databases; remembers them so none is left behind."""

    def __init__(self, run_id: str, tmp: Path) -> None:
        self.run_id = run_id
        self.tmp = tmp
        self.count = 0
        self.live: dict[str, tuple[str, str]] = {}  # name -> (kind, admin URL or file path)

    @contextlib.contextmanager
    def database(self, kind: str) -> Iterator[Database]:
        self.count += 1
        name = f"taskjobs_bench_{self.run_id}_{self.count}"
        if kind == "sqlite":
            path = self.tmp / f"{name}.sqlite3"
            self.live[name] = (kind, str(path))
            try:
                yield Database(
                    kind, name, f"sqlite:///{path}", f"sqlite:///{path}", f"db+sqlite:///{path}"
                )
            finally:
                self.drop(name)
            return
        admin = POSTGRES_ADMIN if kind == "postgresql" else MYSQL_ADMIN
        self.live[name] = (kind, admin)
        _admin_execute(admin, f"CREATE DATABASE {_quote(kind, name)}")
        url = sa.make_url(admin).set(database=name)
        plain = url.set(drivername=url.get_backend_name())
        try:
            yield Database(
                kind,
                name,
                url.render_as_string(hide_password=False),
                plain.render_as_string(hide_password=False),
                "db+" + url.render_as_string(hide_password=False),
            )
        finally:
            self.drop(name)

    def drop(self, name: str) -> None:
        kind, where = self.live.pop(name)
        if kind == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(where + suffix)
        elif kind == "postgresql":
            _admin_execute(where, f"DROP DATABASE IF EXISTS {_quote(kind, name)} WITH (FORCE)")
        else:
            _admin_execute(where, f"DROP DATABASE IF EXISTS {_quote(kind, name)}")

    def drop_all(self) -> None:
        for name in list(self.live):
            with contextlib.suppress(Exception):
                self.drop(name)


def _quote(kind: str, name: str) -> str:
    return f'"{name}"' if kind == "postgresql" else f"`{name}`"


def _admin_execute(admin_url: str, statement: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


# -- worker subprocesses --------------------------------------------------------------------------


class Worker:
    """One ``celery worker`` subprocess in its own session (process group)."""

    def __init__(self, env: dict[str, str], pool: str, queue: str, node: str, tmp: Path) -> None:
        self.node = node
        self.log = tmp / f"{node.split('@')[0]}.log"
        self.ready_file = tmp / f"{node.split('@')[0]}.ready"
        command = [
            sys.executable, "-m", "celery", "-A", "bench.benchapp", "worker",
            "-P", pool,
            *(["-c", str(PREFORK_CONCURRENCY)] if pool == "prefork" else []),
            "-n", node, "-Q", queue,
            "--without-mingle", "--without-gossip",
            "-l", "INFO", "--logfile", str(self.log),
        ]  # fmt: skip
        self.stderr = open(self.log.with_suffix(".stderr"), "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            env={**env, "BENCH_READY_FILE": str(self.ready_file)},
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> dict[str, Any]:
        """The wall-clock time of the worker's ``worker_ready`` signal (``at``), and the
        taskjobs package the worker imported (``taskjobs_file``)."""
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise BenchmarkError(f"worker {self.node} exited at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"worker {self.node} not ready:\n{self.tail()}")
            time.sleep(0.005)
        return dict(json.loads(self.ready_file.read_text()))

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]

    def stop(self) -> int | None:
        """SIGTERM (warm shutdown), SIGKILL to its whole group after a timeout."""
        group = self.process.pid  # start_new_session: the group id is the worker's pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                self.process.wait(10)
        # Pool children normally leave with their parent; whatever is left of the group goes.
        deadline = time.monotonic() + 10
        while _group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                time.sleep(0.2)
                break
            time.sleep(0.1)
        self.stderr.close()
        return self.process.returncode

    def log_problems(self) -> dict[str, Any]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        stderr = self.log.with_suffix(".stderr")
        err_text = stderr.read_text(errors="replace") if stderr.exists() else ""
        lines = [
            line
            for line in text.splitlines()
            if any(f"{level}/" in line for level in ("WARNING", "ERROR", "CRITICAL"))
            or "Traceback" in line
        ]
        return {
            "problem_lines": len(lines)
            + len([line for line in err_text.splitlines() if "Traceback" in line]),
            "first_problems": lines[:5],
            # stdout/stderr hold Celery's banner and its warning about running as root; only
            # tracebacks and errors matter.
            "stderr_problems": [
                line
                for line in err_text.splitlines()
                if ("Error" in line or "Traceback" in line or "Exception" in line)
                and "SecurityWarning" not in line
                and "_warn_or_raise_security_error" not in line
            ][:5],
            "log_bytes": len(text),
        }


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- knowing when every task is done --------------------------------------------------------------


class Poller:
    """``done()`` is cheap enough to call every 50 ms; ``progress`` says how far it saw."""

    method = ""
    progress = 0

    def done(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


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


@dataclasses.dataclass
class Run:
    run_id: str
    tasks: int
    tmp: Path
    scratch: Scratch
    broker: redis.Redis
    results: redis.Redis
    task_log: bool
    src: Path
    host: str = dataclasses.field(default_factory=socket.gethostname)


def _child_env(run: Run, variant: Variant, queue: str, database: Database | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TASKJOBS_", "BENCH_", "CELERY_", "PYTHON"))
    }
    backend = ""
    if variant.backend == "redis":
        backend = RESULT_URL
    elif variant.backend == "celery-db":
        assert database is not None
        backend = database.celery_url
    env.update(
        PYTHONPATH=str(run.src),
        BENCH_BROKER=BROKER_URL,
        BENCH_QUEUE=queue,
        BENCH_BACKEND=backend,
        BENCH_CONF=json.dumps(variant.conf),
        BENCH_TASKJOBS_URL=database.taskjobs_url if variant.taskjobs and database else "",
        BENCH_TASK_LOG="1" if run.task_log else "0",
    )
    return env


def _publish(run: Run, env: dict[str, str], ids_file: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.publisher", str(run.tasks), str(ids_file)],
        env=env,
        cwd=run.tmp,
        capture_output=True,
        text=True,
        timeout=max(300, run.tasks / 10),
        check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"publisher failed:\n{completed.stderr[-3000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


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


def _scalar(url: str, sql: str) -> Any:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _taskjobs_checks(database: Database, t_end: float) -> dict[str, Any]:
    """After the clock: is every job complete and its history whole? Where did time go?
    Plain SQL, so that the benchmark itself never imports taskjobs."""
    url = database.sa_url
    statuses = dict(_rows(url, "SELECT status, count(*) FROM taskjobs_jobs GROUP BY status"))
    transitions = dict(
        _rows(url, "SELECT celery_state, count(*) FROM taskjobs_transitions GROUP BY celery_state")
    )
    missing = _rows(
        url,
        "SELECT sum(CASE WHEN received_at IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN started_at IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN worker IS NULL THEN 1 ELSE 0 END),"
        " sum(CASE WHEN runtime IS NULL THEN 1 ELSE 0 END)"
        " FROM taskjobs_jobs",
    )[0]
    rows = _rows(url, "SELECT started_at, finished_at, runtime, pid FROM taskjobs_jobs")
    spans, runtimes, last = [], [], None
    for started, finished, runtime, _pid in rows:
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
        "pids": len({row[3] for row in rows}),
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


def _cleanup_redis(run: Run, queue: str, ids: list[str]) -> None:
    keys = list(run.broker.scan_iter(match=f"*{queue}*", count=1000))
    if keys:
        run.broker.delete(*keys)
    for start in range(0, len(ids), 1000):
        chunk = [f"celery-task-meta-{task_id}" for task_id in ids[start : start + 1000]]
        run.results.delete(*chunk)


def measure(run: Run, variant: Variant, pool: str, rep: int) -> dict[str, Any]:
    tag = f"{variant.key}-{pool}-r{rep}"
    queue = f"bench-{run.run_id}-{tag}"
    node = f"bench-{run.run_id}-{tag}@{run.host}"
    result: dict[str, Any] = {"variant": variant.key, "pool": pool, "rep": rep, "tasks": run.tasks}
    ids: list[str] = []
    database_cm = (
        run.scratch.database(variant.database) if variant.database else contextlib.nullcontext()
    )
    try:
        with database_cm as database:
            env = _child_env(run, variant, queue, database)
            ids_file = run.tmp / f"{tag}.ids"
            published = _publish(run, env, ids_file)
            ids = ids_file.read_text().split()
            ids_file.unlink()
            imported = published.get("taskjobs_file")
            if imported is not None and not imported.startswith(str(run.src)):
                raise BenchmarkError(
                    f"publisher imported taskjobs from {imported}, not the snapshot"
                )
            result["publish_seconds"] = round(published["seconds"], 4)
            result["publish_rate"] = round(published["rate"], 1)
            result["queued_before_start"] = run.broker.llen(queue)
            if result["queued_before_start"] != run.tasks:
                raise BenchmarkError(
                    f"{result['queued_before_start']} messages queued, not {run.tasks}"
                )
            if variant.taskjobs:
                assert database is not None
                pending = _scalar(
                    database.sa_url, "SELECT count(*) FROM taskjobs_jobs WHERE status = 'pending'"
                )
                result["pending_jobs_before_start"] = pending
                if pending != run.tasks:
                    raise BenchmarkError(f"{pending} pending jobs before start, not {run.tasks}")
            poller = _poller(run, variant, database, ids, queue, node)
            result["done_when"] = poller.method
            worker = Worker(env, pool, queue, node, run.tmp)
            try:
                ready = worker.wait_ready()
                started = float(ready["at"])
                imported = ready.get("taskjobs_file")
                if imported is not None and not imported.startswith(str(run.src)):
                    raise BenchmarkError(f"worker imported taskjobs from {imported}")
                deadline = time.monotonic() + max(180, run.tasks / 20)
                polls = 0
                next_poll = time.monotonic()
                while True:
                    polls += 1
                    if poller.done():
                        ended = time.time()
                        break
                    if not worker.alive():
                        raise BenchmarkError(
                            f"worker died after {poller.progress} tasks:\n{worker.tail()}"
                        )
                    if time.monotonic() > deadline:
                        raise BenchmarkError(
                            f"timed out with {poller.progress}/{run.tasks} done:\n{worker.tail()}"
                        )
                    next_poll += POLL_INTERVAL
                    time.sleep(max(0.0, next_poll - time.monotonic()))
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
                    result["checks"] = {
                        "statuses": dict(
                            _rows(
                                database.sa_url,
                                "SELECT status, count(*) FROM celery_taskmeta GROUP BY status",
                            )
                        )
                    }
            finally:
                poller.close()
                result["worker_exit"] = worker.stop()
                result["worker_log"] = worker.log_problems()
    except BenchmarkError as exc:
        result["error"] = str(exc)
    finally:
        _cleanup_redis(run, queue, ids)
    return result


# -- the code under test: a snapshot, so that edits during a run cannot mix versions ------------


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def _tree_hash(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def snapshot(src: Path, worktree: bool) -> dict[str, Any]:
    """Copy the taskjobs package (committed HEAD, or the working tree as it is now) and this
    benchmark's app into ``src``, the only directory the publishers and workers import from."""
    src.mkdir()
    commit = _git("rev-parse", "HEAD").strip()
    dirty = _git("status", "--porcelain", "--", "taskjobs").splitlines()
    if worktree:
        shutil.copytree(
            ROOT / "taskjobs", src / "taskjobs", ignore=shutil.ignore_patterns("__pycache__")
        )
    else:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "taskjobs"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(src, filter="data")
    (src / "bench").mkdir()
    for name in ("__init__.py", "benchapp.py", "publisher.py"):
        shutil.copy2(BENCH / name, src / "bench" / name)
    return {
        "source": "working tree" if worktree else f"git HEAD {commit}",
        "git_head": commit,
        "uncommitted_taskjobs_changes": dirty,
        "taskjobs_sha256": _tree_hash(src / "taskjobs"),
        "live_taskjobs_sha256_at_start": _tree_hash(ROOT / "taskjobs"),
    }


# -- the run --------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    servers: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        servers["postgresql"] = _scalar(POSTGRES_ADMIN, "SHOW server_version")
    with contextlib.suppress(Exception):
        servers["mariadb"] = _scalar(MYSQL_ADMIN, "SELECT version()")
    with contextlib.suppress(Exception):
        servers["redis"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {
            package: version(package)
            for package in (
                "celery",
                "kombu",
                "billiard",
                "SQLAlchemy",
                "psycopg",
                "PyMySQL",
                "redis",
                "alembic",
                "taskjobs",
            )
        },
        "servers": servers,
        "loadavg_start": os.getloadavg(),
    }


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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _leftover_keys(client: redis.Redis, before: set[bytes]) -> list[bytes]:
    return [key for key in client.scan_iter(count=1000) if key not in before]


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    started_at = dt.datetime.now(dt.timezone.utc)
    run_id = uuid.uuid4().hex[:8]
    output = RESULTS / f"throughput-{started_at:%Y%m%dT%H%M%SZ}.json"
    tmp = Path(tempfile.mkdtemp(prefix=f"taskjobs-bench-{run_id}-"))
    broker = redis.Redis.from_url(BROKER_URL)
    results = redis.Redis.from_url(RESULT_URL)
    broker_before, results_before = (
        set(broker.scan_iter(count=1000)),
        set(results.scan_iter(count=1000)),
    )
    try:
        code = snapshot(tmp / "src", args.worktree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    run = Run(
        run_id, args.tasks, tmp, Scratch(run_id, tmp), broker, results, args.task_log, tmp / "src"
    )
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
            "clock": "starts at the worker's worker_ready signal (Celery logs 'ready.' right "
            "after); stops when a poll sees every task's final state",
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
        run.scratch.drop_all()
        leftovers = {
            "broker_db": _leftover_keys(broker, broker_before),
            "result_db": _leftover_keys(results, results_before),
        }
        for client, keys in ((broker, leftovers["broker_db"]), (results, leftovers["result_db"])):
            if keys:
                client.delete(*keys)
        data["redis_keys_cleaned_at_end"] = {name: len(keys) for name, keys in leftovers.items()}
        data["machine"]["loadavg_end"] = os.getloadavg()
        # Informational: whether the live repository moved on while the snapshot was measured.
        data["code"]["git_head_at_end"] = _git("rev-parse", "HEAD").strip()
        data["code"]["live_taskjobs_sha256_at_end"] = _tree_hash(ROOT / "taskjobs")
        data["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
        summary = summarize(data["measurements"], args.variant_list, args.pool_list)
        data.update(summary)
        _write_json(output, data)
        if not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(render(summary))
    print(f"\nresults: {output.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
