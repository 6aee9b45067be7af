"""A store's worth of jobs for the web tests, written the way the Celery receivers write them:
a workflow (a root, a chained child, a group with a failed member), jobs waiting, running and
retrying, workers alive, silent and stopped, and a job whose every field is hostile text."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

from taskjobs import lifecycle
from taskjobs.lifecycle import Lineage
from taskjobs.model import CELERY_FAILURE, utcnow
from taskjobs.store import Store

# The routes, with the seeded jobs' ids where they take one.
PAGES = ["/", "/jobs", "/jobs/wf-root-0001", "/workers"]
API_ROUTES = ["/api/tasks", "/api/task/info/wf-root-0001", "/api/task/result/wf-root-0001",
              "/api/task/types", "/api/workers", "/api/v1/jobs", "/api/v1/jobs/wf-root-0001",
              "/api/v1/jobs/wf-root-0001/workflow", "/api/v1/report", "/api/v1/workers",
              "/api/v1/openapi.json"]  # fmt: skip

# Text that runs a script wherever a page forgets to escape it.
HOSTILE = '<script>window.hostile=1</script><img src=x onerror="window.hostile=2">"\'&'


@dataclasses.dataclass(frozen=True)
class Seeded:
    """The ids of the seeded jobs, by role, and the time the seeding was based on."""

    now: datetime
    root: str
    child: str
    group: str
    members: tuple[str, str, str]
    failed_member: str
    pending: str
    running: str
    retrying: str
    hostile: str

    def by_role(self) -> dict[str, str]:
        """The ids the filter tests name: the single jobs, and ``member0`` to ``member2``."""
        roles = {
            "hostile": self.hostile,
            "failed_member": self.failed_member,
            "retrying": self.retrying,
            "running": self.running,
            "pending": self.pending,
        }
        return {**roles, **{f"member{i}": member for i, member in enumerate(self.members)}}

    def all_ids(self) -> list[str]:
        ids = [self.root, self.child, *self.members, self.pending, self.running]
        return [*ids, self.retrying, self.hostile]


def _request(*args: object, **kwargs: object) -> str:
    return json.dumps({"args": list(args), "kwargs": kwargs})


def _run(
    store: Store,
    job_id: str,
    name: str,
    at: datetime,
    *,
    lineage: Lineage | None = None,
    request: str = "",
    user: str | None = None,
    worker: str = "celery@alpha",
    queue: str = "celery",
    until: str = "finished",
    result: str = "null",
    runtime: float = 0.25,
) -> None:
    """Publish, receive and start job ``job_id`` at ``at``, then end it as ``until`` says:
    ``pending``, ``running``, ``finished`` or ``error``."""
    common = {"name": name, "user": user, "request": request, "queue": queue,
              "lineage": lineage or Lineage(), "retries": 0}  # fmt: skip
    # Stamped as a tracked publisher stamps its message, with the stamp the worker reads.
    store.apply(lifecycle.published(job_id, eta=None, delivery=1, at=at, **common))
    if until == "pending":
        return
    store.apply(lifecycle.received(job_id, eta=None, worker=worker, redelivered=False,
                                   delivery=1, at=at + timedelta(seconds=1), **common))  # fmt: skip
    store.apply(lifecycle.started(job_id, worker=worker, pid=4242, redelivered=False,
                                  delivery=1, at=at + timedelta(seconds=2), **common))  # fmt: skip
    end = at + timedelta(seconds=2 + runtime)
    if until == "finished":
        store.apply(lifecycle.succeeded(job_id, name=name, result=result, runtime=runtime,
                                        retries=0, delivery=1, at=end))  # fmt: skip
    elif until == "error":
        traceback = (
            "Traceback (most recent call last):\n"
            '  File "shop/tasks.py", line 12, in ship\n'
            "    raise LookupError(parcel)\n"
            "LookupError: parcel 3 is lost"
        )
        store.apply(lifecycle.ended(job_id, what="failure", celery_state=CELERY_FAILURE,
                                    retries=0, reason=traceback, exc_type="LookupError",
                                    runtime=runtime, delivery=1, at=end))  # fmt: skip


def seed(store: Store, now: datetime | None = None) -> Seeded:
    """Write the seeded jobs and heartbeats into ``store``, in one transaction as the batched
    recorder writes (a commit per write made each web test's setup cost more than its test);
    return their ids."""
    with store.batch():
        now = now or utcnow()
        start = now - timedelta(minutes=30)
        root, child, group = "wf-root-0001", "wf-child-0002", "wf-group-0003"
        members = ("wf-member-0004", "wf-member-0005", "wf-member-0006")
        _run(store, root, "shop.checkout", start, request=_request(17, cart="c-9"), user="ada",
             result=json.dumps({"order": 17}))  # fmt: skip
        _run(store, child, "shop.charge", start + timedelta(seconds=5), user="ada",
             lineage=Lineage(parent_id=root, root_id=root), request=_request(17),
             result=json.dumps({"charged": "12.50 EUR"}))  # fmt: skip
        for index, member in enumerate(members):
            _run(store, member, "shop.ship", start + timedelta(seconds=10 + index), user="ada",
                 lineage=Lineage(parent_id=child, root_id=root, group_id=group),
                 request=_request(17, parcel=index + 1), worker="celery@beta",
                 until="error" if index == 2 else "finished", runtime=1.5 + index)  # fmt: skip
        pending, running, retrying = "job-pending-0007", "job-running-0008", "job-retrying-0009"
        _run(store, pending, "mail.send", now - timedelta(minutes=3), until="pending",
             request=_request("grace@example.com"), user="grace")  # fmt: skip
        _run(store, running, "report.build", now - timedelta(minutes=20), until="running",
             request=_request(2026), user="grace")  # fmt: skip
        _run(store, retrying, "mail.send", now - timedelta(minutes=10), until="running",
             request=_request("linus@example.com"), user="linus")  # fmt: skip
        store.apply(lifecycle.retried(retrying, retries=1, reason="Retry in 60s: SMTP timeout",
                                      delivery=1, at=now - timedelta(minutes=9)))  # fmt: skip
        hostile = "job-hostile-0010"
        _run(store, hostile, f"evil.{HOSTILE}", now - timedelta(minutes=5), user=HOSTILE,
             request=_request(HOSTILE, note=HOSTILE * 50), worker=f"celery@{HOSTILE}",
             until="error", queue=HOSTILE)  # fmt: skip
        store.append_message(hostile, f"progress {HOSTILE}", now - timedelta(minutes=4))
        store.heartbeat("celery@alpha", hostname="alpha", pid=101, at=now - timedelta(seconds=5))
        store.heartbeat("celery@beta", hostname="beta", pid=102, at=now - timedelta(minutes=10))
        store.heartbeat("celery@gamma", hostname="gamma", pid=103, at=now - timedelta(hours=2))
        store.reap(silent_since=None, worker="celery@gamma", at=now - timedelta(hours=2),
                   reason="worker stopped")  # fmt: skip
    return Seeded(now, root, child, group, members, members[2], pending, running, retrying,
                  hostile)  # fmt: skip
