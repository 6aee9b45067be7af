"""Two Celery apps with a database and write mode each, ``orders`` and ``billing``, for the
tests that run them side by side. A worker builds its app from the environment
(``celery -A tests.twoapps:orders worker``): TJ_BROKER, TJ_QUEUE_SUFFIX, and per app
TJ_<APP>_DB and TJ_<APP>_MODE."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

import taskjobs
from taskjobs.celery import registry

NAMES = ("orders", "billing")


def make_app(
    name: str, broker: str, url: str, write_mode: str, suffix: str, publish_mode: str = "sync"
) -> Celery:
    """App ``name``, tracked into ``url`` in ``write_mode`` (publishing in ``publish_mode``),
    consuming ``{name}-{suffix}``."""
    app = Celery(name, set_as_current=False)
    app.conf.update(
        broker_url=broker,
        task_default_queue=f"{name}-{suffix}",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        taskjobs_database_url=url,
        taskjobs_write_mode=write_mode,
        taskjobs_publish_mode=publish_mode,
    )

    @app.task(name=f"{name}.work", bind=True, shared=False)
    def work(self: Any, value: int) -> dict[str, Any]:
        """What the worker's tracker for this task's app is: its mode and store."""
        tracker = registry.installed(self.app)
        assert tracker is not None
        return {"value": value * 2, "mode": tracker.settings.write_mode,
                "store": str(tracker.store.url)}  # fmt: skip

    taskjobs.install(app)
    return app


def __getattr__(name: str) -> Celery:
    if name not in NAMES:
        raise AttributeError(name)
    env = os.environ
    app = make_app(name, env["TJ_BROKER"], env[f"TJ_{name.upper()}_DB"],
                   env[f"TJ_{name.upper()}_MODE"], env["TJ_QUEUE_SUFFIX"])  # fmt: skip
    globals()[name] = app
    return app
