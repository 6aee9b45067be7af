"""The example's Celery app, configured from the environment as a container or a systemd unit
sets it: ``CELERY_BROKER_URL`` (Redis or RabbitMQ), ``TASKJOBS_DATABASE_URL`` (the job store,
read by taskjobs itself) and, optionally, ``CELERY_RESULT_BACKEND``."""

from __future__ import annotations

import os

from celery import Celery

import taskjobs

app = Celery("shop", include=["shop.tasks"])
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND") or None,
    task_default_queue=os.environ.get("SHOP_QUEUE", "shop"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
)
taskjobs.install(app)
