"""Real `celery worker` processes on real brokers and databases.

Each stack is a broker (Redis or RabbitMQ), a job store (SQLite file, PostgreSQL, MariaDB), a
Redis result backend, a queue of its own, and a prefork worker subprocess consuming it.
"""

from __future__ import annotations

import dataclasses
import gc
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

import taskjobs
from taskjobs.celery.launcher import Worker, start_worker
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
        """A worker on the stack's queue (or ``queue``), ready; stopped with the stack."""
        number = len(self.workers) + 1
        worker = start_worker(
            "tests.celeryapp",
            log=self.tmp / f"worker-{number}.log",
            pool=pool,
            concurrency=concurrency,
            hostname=f"w{number}-{uuid.uuid4().hex[:6]}@%h",
            queues=[queue or self.queue],
            args=extra,
            env={
                "PYTHONPATH": str(ROOT),
                "TJ_BROKER": BROKERS[self.broker],
                "TJ_BACKEND": f"{REDIS_URL}/{BACKEND_DB}",
                "TJ_QUEUE": self.queue,
                "TASKJOBS_DATABASE_URL": self.url,
                **(env or {}),
            },
            cwd=self.tmp,
            stop_timeout=WORKER_STOP_TIMEOUT,
        )
        self.workers.append(worker)
        worker.wait_ready(WORKER_START_TIMEOUT)
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
