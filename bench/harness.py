"""What a worker benchmark runs on: the services, scratch databases, the code under test (a
snapshot), publisher and worker subprocesses, the clock, cleanup and the results file.

``bench/throughput.py`` says what is measured and compared; ``bench/memory.py`` starts its
workers here too. Workers run ``bench.benchapp`` (see its docstring for the ``BENCH_*``
environment it reads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from taskjobs.celery.launcher import Worker, WorkerStartError
from taskjobs.celery.launcher import start_worker as launch
from tests.services import engine_url, scratch_database

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


class BenchmarkError(RuntimeError):
    """A measurement that could not be completed."""


@dataclasses.dataclass
class Run:
    """One benchmark run: its tasks per measurement, folders and Redis clients."""

    run_id: str
    tasks: int
    tmp: Path
    broker: redis.Redis
    results: redis.Redis
    task_log: bool
    src: Path
    host: str = dataclasses.field(default_factory=socket.gethostname)
    # "worker": publish everything, then start the worker and time it; "end-to-end": the
    # worker runs first and the clock starts at the first publish, as a user meets it.
    clock: str = "worker"
    # Signatures per ``group`` publish (0: a loop of ``apply_async``).
    group: int = 0


# -- scratch databases ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Database:
    kind: str
    taskjobs_url: str  # as a taskjobs user writes it

    @property
    def sa_url(self) -> str:
        """For SQLAlchemy (driver named): polling and checks."""
        return engine_url(self.taskjobs_url)

    @property
    def celery_url(self) -> str:
        """For Celery's database backend."""
        return "db+" + self.sa_url


@contextlib.contextmanager
def scratch(kind: str, tmp: Path) -> Iterator[Database]:
    """A fresh database of ``kind`` (a SQLite file in ``tmp``), dropped afterwards."""
    server = {"postgresql": POSTGRES_ADMIN, "mariadb": MYSQL_ADMIN}.get(kind)
    with scratch_database(kind, str(tmp), server=server, prefix="taskjobs_bench") as url:
        yield Database(kind, url)


# -- publisher and worker subprocesses ------------------------------------------------------------


def child_env(
    run: Run, queue: str, backend: str, conf: dict[str, Any], taskjobs_url: str
) -> dict[str, str]:
    """The environment of a publisher or worker: the snapshot as the only import path, and
    ``bench.benchapp``'s settings; nothing of this process's taskjobs, Celery or Python."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TASKJOBS_", "BENCH_", "CELERY_", "PYTHON"))
    }
    env.update(
        PYTHONPATH=str(run.src),
        BENCH_BROKER=BROKER_URL,
        BENCH_QUEUE=queue,
        BENCH_BACKEND=backend,
        BENCH_CONF=json.dumps(conf),
        BENCH_TASKJOBS_URL=taskjobs_url,
        BENCH_TASK_LOG="1" if run.task_log else "0",
    )
    return env


def publish(run: Run, env: dict[str, str], ids_file: Path) -> dict[str, Any]:
    """Run ``bench.publisher``: ``run.tasks`` tasks published, their ids in ``ids_file``."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.publisher", str(run.tasks), str(ids_file), str(run.group)],
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


def start_worker(
    env: dict[str, str],
    pool: str,
    queue: str,
    node: str,
    tmp: Path,
    *,
    concurrency: int | None = None,
    loglevel: str = "INFO",
) -> Worker:
    """``celery -A bench.benchapp worker`` on ``queue``, in a process group of its own; its log
    (``<name>.log``), output (``<name>.stderr``) and ready file (``<name>.ready``) in ``tmp``."""
    stem = tmp / node.split("@")[0]
    return launch(
        "bench.benchapp",
        log=stem.with_suffix(".log"),
        pool=pool,
        concurrency=concurrency,
        hostname=node,
        queues=[queue],
        loglevel=loglevel,
        base_env=env,
        env={"BENCH_READY_FILE": str(stem.with_suffix(".ready"))},
        cwd=tmp,
        output=stem.with_suffix(".stderr"),
        stop_timeout=WORKER_STOP_TIMEOUT,
    )


def wait_ready(worker: Worker) -> dict[str, Any]:
    """The wall-clock time of the worker's ``worker_ready`` signal (``at``), and the taskjobs
    package the worker imported (``taskjobs_file``), once the worker has written them."""
    ready_file = worker.log.with_suffix(".ready")
    try:
        worker.wait_ready(WORKER_READY_TIMEOUT, until=ready_file.exists, interval=0.005)
    except WorkerStartError as exc:
        raise BenchmarkError(str(exc)) from None
    return dict(json.loads(ready_file.read_text()))


def log_problems(worker: Worker) -> dict[str, Any]:
    """Warnings, errors and tracebacks in the worker's log and output."""
    text = worker.log_text()
    err_text = worker.output.read_text(errors="replace") if worker.output.exists() else ""
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


# -- the clock ------------------------------------------------------------------------------------


class Poller:
    """``done()`` is cheap enough to call every 50 ms; ``progress`` says how far it saw."""

    method = ""
    progress = 0

    def done(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


def time_until_done(poller: Poller, worker: Worker, tasks: int) -> tuple[float, int]:
    """Poll every ``POLL_INTERVAL`` until ``poller`` is done: the wall-clock time that poll
    returned, and how many polls it took. Raises ``BenchmarkError`` if the worker dies or
    the tasks take too long."""
    deadline = time.monotonic() + max(180, tasks / 20)
    polls = 0
    next_poll = time.monotonic()
    while True:
        polls += 1
        if poller.done():
            return time.time(), polls
        if not worker.alive():
            raise BenchmarkError(f"worker died after {poller.progress} tasks:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out with {poller.progress}/{tasks} done:\n{worker.tail()}")
        next_poll += POLL_INTERVAL
        time.sleep(max(0.0, next_poll - time.monotonic()))


# -- SQL and Redis --------------------------------------------------------------------------------


def scalar(url: str, sql: str) -> Any:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def cleanup_redis(run: Run, queue: str, ids: list[str]) -> None:
    """Remove a measurement's queue keys from the broker and its results from the backend."""
    keys = list(run.broker.scan_iter(match=f"*{queue}*", count=1000))
    if keys:
        run.broker.delete(*keys)
    for start in range(0, len(ids), 1000):
        chunk = [f"celery-task-meta-{task_id}" for task_id in ids[start : start + 1000]]
        run.results.delete(*chunk)


class NewKeys:
    """The keys of a Redis database seen at start, so that those the run adds can go."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.before = set(client.scan_iter(count=1000))

    def delete(self) -> int:
        """Delete every key added since start; returns how many there were."""
        keys = [key for key in self.client.scan_iter(count=1000) if key not in self.before]
        if keys:
            self.client.delete(*keys)
        return len(keys)


# -- the code under test: a snapshot, so that edits during a run cannot mix versions ------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def tree_hash(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def snapshot(src: Path, worktree: bool) -> dict[str, Any]:
    """Copy the taskjobs package (committed HEAD, or the working tree as it is now) and this
    benchmark's app into ``src``, the only directory the publishers and workers import from."""
    src.mkdir()
    commit = git("rev-parse", "HEAD").strip()
    dirty = git("status", "--porcelain", "--", "taskjobs").splitlines()
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
        "taskjobs_sha256": tree_hash(src / "taskjobs"),
        "live_taskjobs_sha256_at_start": tree_hash(ROOT / "taskjobs"),
    }


# -- the record of a run --------------------------------------------------------------------------


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
        servers["postgresql"] = scalar(POSTGRES_ADMIN, "SHOW server_version")
    with contextlib.suppress(Exception):
        servers["mariadb"] = scalar(MYSQL_ADMIN, "SELECT version()")
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


def record_end(data: dict[str, Any]) -> None:
    """The end of a run in its record: load, and whether the live repository moved on while
    the snapshot was measured (informational)."""
    data["machine"]["loadavg_end"] = os.getloadavg()
    data["code"]["git_head_at_end"] = git("rev-parse", "HEAD").strip()
    data["code"]["live_taskjobs_sha256_at_end"] = tree_hash(ROOT / "taskjobs")
    data["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def code_measured() -> dict[str, Any]:
    """The taskjobs a benchmark that imports it from this checkout measured: the commit, the
    package's uncommitted changes, and a hash of the package as it was."""
    return {
        "source": "this checkout",
        "git_head": git("rev-parse", "HEAD").strip(),
        "uncommitted_taskjobs_changes": git("status", "--porcelain", "--", "taskjobs").splitlines(),
        "taskjobs_sha256": tree_hash(ROOT / "taskjobs"),
    }


# The checkout as this benchmark found it when it began: what it imported and ran, even if
# commits land while it runs (a report-scale run takes an hour).
CODE_AT_START = code_measured()


def save_results(kind: str, data: dict[str, Any]) -> Path:
    """Write a run's ``data`` to ``bench/results/<kind>-<UTC time>.json``; say where. A record
    that does not say what code it measured (``code``) is given this checkout's as the run
    began."""
    data.setdefault("code", CODE_AT_START)
    path = RESULTS / f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    write_json(path, data)
    print(f"\nwritten to {path.relative_to(BENCH.parent)}")
    return path


def raise_interrupt(signum: int, _frame: Any) -> None:
    """A signal handler that stops a run as Ctrl-C does, so that it cleans up."""
    raise KeyboardInterrupt(f"signal {signum}")
