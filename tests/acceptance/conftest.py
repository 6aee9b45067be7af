"""Real `celery worker` processes on real brokers and databases.

Each stack is a broker (Redis or RabbitMQ), a job store (SQLite file, PostgreSQL, MariaDB), a
Redis result backend, a queue of its own, and a prefork worker subprocess consuming it.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

import taskjobs
from tests.celeryapp import make_app
from tests.services import RABBITMQ_URL, REDIS_URL, require, scratch_database

ROOT = Path(__file__).resolve().parents[2]
# Redis databases for the acceptance runs: one for messages, one for Celery's own results.
BROKER_DB, BACKEND_DB = 13, 14
# Seconds a worker may take to say it is ready, and to stop after SIGTERM.
WORKER_START_TIMEOUT = 60
WORKER_STOP_TIMEOUT = 30

BROKERS = {"redis": f"{REDIS_URL}/{BROKER_DB}", "rabbitmq": RABBITMQ_URL}


@dataclasses.dataclass
class Worker:
    """A `celery worker` subprocess and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while " ready." not in self.log_text():
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.name} exited at start:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"worker {self.name} not ready:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the worker (warm shutdown by default) and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@dataclasses.dataclass
class Stack:
    """Everything one acceptance configuration runs on."""

    broker: str
    database: str
    url: str
    queue: str
    publisher: Celery
    tmp: Path
    workers: list[Worker] = dataclasses.field(default_factory=list)

    def start_worker(
        self,
        *extra: str,
        pool: str = "prefork",
        concurrency: int = 2,
        queue: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Worker:
        name = f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}@%h"
        log = self.tmp / f"worker-{len(self.workers) + 1}.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TJ_BROKER": BROKERS[self.broker],
            "TJ_BACKEND": f"{REDIS_URL}/{BACKEND_DB}",
            "TJ_QUEUE": self.queue,
            "TASKJOBS_DATABASE_URL": self.url,
            **(env or {}),
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celeryapp",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            name,
            "-Q",
            queue or self.queue,
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
            "--logfile",
            str(log),
            *extra,
        ]
        process = subprocess.Popen(
            command, env=env, cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        worker = Worker(name.replace("%h", os.uname().nodename), process, log)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


STACKS = [
    ("redis", "sqlite"),
    ("redis", "postgresql"),
    ("rabbitmq", "sqlite"),
    ("rabbitmq", "postgresql"),
    ("redis", "mariadb"),
]


def close_backend(app: Celery) -> None:
    """Close the connections of the app's Redis result backend (app.close() leaves them): its
    result consumer's subscription, and its pool. Results of the test still waiting in reference
    cycles are collected first: collected later, each would unsubscribe through a new
    connection. Redis connections already unreachable are closed as they are collected (the
    warning each gives says only that redis-py left its closing to the collector)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        consumer.stop()
    client = getattr(backend, "client", None)
    if client is not None:
        client.connection_pool.disconnect()


def build_stack(broker: str, database: str, tmp: Path) -> Iterator[Stack]:
    """A stack with its scratch database and publisher; its workers are stopped at the end."""
    require(BROKERS[broker], broker)
    require(REDIS_URL, "redis (result backend)")
    with scratch_database(database, str(tmp)) as url:
        taskjobs.configure(url)
        queue = f"taskjobs-{broker}-{database}-{uuid.uuid4().hex[:8]}"
        publisher = make_app(BROKERS[broker], f"{REDIS_URL}/{BACKEND_DB}", queue)
        stack = Stack(broker, database, url, queue, publisher, tmp)
        try:
            yield stack
        finally:
            stack.stop_workers()
            close_backend(publisher)
            publisher.close()
            taskjobs.configure(None)


@pytest.fixture(scope="module", params=STACKS, ids=["-".join(s) for s in STACKS])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack per configuration with one prefork worker (-c 2) running."""
    broker, database = request.param
    yield from running_stack(broker, database, tmp_path_factory.mktemp(f"{broker}-{database}"))


def running_stack(broker: str, database: str, tmp: Path) -> Iterator[Stack]:
    """A stack with one prefork worker (-c 2) running, for a module-scoped fixture."""
    for built in build_stack(broker, database, tmp):
        built.start_worker()
        yield built
