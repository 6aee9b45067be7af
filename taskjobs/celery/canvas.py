"""Canvas bookkeeping: replaced tasks, and the members of a workflow Celery ends unrun.

``Task.replace`` publishes the replacement from inside the task, then ends the task without a
success or failure signal; a failed chain link or chord member makes Celery fail the links and
bodies after it without ever publishing them. Their jobs follow here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from celery import Task

from taskjobs import lifecycle
from taskjobs.celery import registry
from taskjobs.celery.message import NESTING_HEADER, delivery, nesting, whole
from taskjobs.celery.tracker import Tracker, never_raising
from taskjobs.lifecycle import Lineage
from taskjobs.model import CELERY_FAILURE, utcnow

# What the tasks running in this thread published as their replacements, by task id: when the
# first replacement message went out, and the "name id" of each task it will run.
_replacing = threading.local()


def note_replacement(
    running: Task, name: str | None, headers: Mapping[str, Any], body: Any
) -> bool:
    """Remember what a task publishes as its replacement (``Task.replace``): the messages
    sent from inside it one replacement level deeper than itself. True if this message is
    the first of them (see ``settle_replaced``)."""
    request = running.request
    if whole(headers.get(NESTING_HEADER)) <= whole(nesting(request)):
        return False
    if headers.get("id") == request.id:  # a single task takes over the id: it is all there is
        record_replacement(running, [f"{name} {request.id}"])
        return True
    pending = _replacing.__dict__
    first = request.id not in pending
    if first:
        pending[request.id] = (utcnow(), [])
    _, sent = pending[request.id]
    sent.append(f"{name} {headers.get('id')}")
    embedded = body[2] if isinstance(body, (tuple, list)) and len(body) > 2 else None
    if isinstance(embedded, Mapping):
        for link in reversed(embedded.get("chain") or []):
            sent.extend(signature_names(link))
        chord_body = embedded.get("chord")
        if chord_body:
            sent.extend(f"{text} (when the group is done)" for text in signature_names(chord_body))
    return first


def settle_replaced(running: Task, timeout: float) -> None:
    """Before a replacement's first message leaves, write out what this process queued for
    the task it replaces (its start, in grouped and batched mode): the replacement's tasks end
    that task's job only if it exists, and they run in other processes, whose writes this
    one's do not wait for. A store that does not answer within ``timeout`` seconds holds the
    replacement up no longer."""
    with never_raising("the writes before a replacement", running.request.id):
        tracked = registry.tracking(running, nesting(running.request))
        if tracked is not None:
            tracked[0].recorder().flush(timeout)


def take_replacement(task_id: str) -> tuple[datetime, list[str]] | None:
    """When the task ``task_id`` began to publish its replacement, and what it published,
    forgotten now."""
    found: tuple[datetime, list[str]] | None = _replacing.__dict__.pop(task_id, None)
    return found


def signature_names(signature: Any) -> list[str]:
    """ "name id" of each task a signature (a dict in a message body) will run, group members
    included."""
    if not isinstance(signature, Mapping):
        return []
    options = signature.get("options") or {}
    members = (signature.get("kwargs") or {}).get("tasks")
    if members and signature.get("task") in ("celery.group", "celery.chain"):
        return [text for member in members for text in signature_names(member)]
    if options.get("task_id"):
        return [f"{signature.get('task')} {options['task_id']}"]
    return []


def record_replacement(
    task: Task | None, replacement: list[str], at: datetime | None = None
) -> None:
    """``task`` replaced itself at ``at`` (now if not given): its job says by what, and waits
    for it. The note is written once the task returns, when all of its replacement is known;
    a replacement run by another worker process may have ended the job by then, so the note
    keeps the time the replacement was published."""
    request: Any = getattr(task, "request", None)
    task_id = getattr(request, "id", None)
    with never_raising("replacement", task_id):
        tracked = registry.tracking(task, nesting(request))
        if tracked is None or task_id is None:
            return
        tracker, existing_only = tracked
        tracker.record(
            lifecycle.replaced(
                task_id,
                replacement=replacement,
                retries=whole(request.retries),
                delivery=delivery(request),
                at=at or utcnow(),
                existing_only=existing_only,
            )
        )


def fail_chain_successors(tracker: Tracker, request: Any, failed: str, exception: Any) -> None:
    """Celery stores every later link of a failed task's chain as failed, though none of them
    ever runs or is published: each gets its job, in error, naming the link that failed."""
    kind = type(exception).__name__
    reason = f"not run: {failed}, earlier in its chain, failed: {kind}: {exception}"
    _end_unrun(tracker, request.chain, reason, kind, parent_id=request.id,
               root_id=request.root_id)  # fmt: skip


def fail_chord_body(tracker: Tracker, request: Any, failed: str, error: str) -> None:
    """A chord header member failed (or was revoked): Celery fails the chord body with a
    ``ChordError`` once the header is done, without running it, and every link chained after
    the body too. Their jobs end now, in error, naming the member."""
    body = getattr(request, "chord", None)
    if not isinstance(body, Mapping):
        return
    member_id = failed.rsplit(" ", 1)[-1]
    reason = f"not run: chord header member {failed} failed: Dependency {member_id} raised {error}"
    root_id = getattr(request, "root_id", None)
    members = (
        (body.get("kwargs") or {}).get("tasks") if body.get("task") == "celery.group" else None
    )
    _end_unrun(tracker, members or [body], reason, "ChordError",
               parent_id=None, root_id=root_id, chained=False)  # fmt: skip
    options = body.get("options") or {}
    _end_unrun(tracker, options.get("chain"), reason, "ChordError",
               parent_id=options.get("task_id"), root_id=root_id)  # fmt: skip


def _end_unrun(
    tracker: Tracker,
    signatures: Any,
    reason: str,
    exc_type: str,
    *,
    parent_id: str | None,
    root_id: str | None,
    chained: bool = True,
) -> None:
    """End in error the jobs of ``signatures`` (message-body dicts; a chain listed last to
    first, as Celery lists it, each link the parent of the next), tasks Celery ended without
    running them. A task whose name is not tracked only ends a job that exists (one it
    replaced)."""
    for signature in reversed(list(signatures or [])):
        if not isinstance(signature, Mapping):
            continue
        options = signature.get("options") or {}
        job_id, name = options.get("task_id"), signature.get("task")
        if not job_id:
            continue
        with never_raising("a task Celery ended without running it", job_id):
            tracker.record(
                lifecycle.ended(
                    job_id,
                    what="end of a task Celery did not run",
                    celery_state=CELERY_FAILURE,
                    retries=None,
                    reason=reason,
                    exc_type=exc_type,
                    name=name,
                    lineage=Lineage(parent_id, root_id, options.get("group_id")),
                    existing_only=not tracker.settings.tracks(name),
                    at=utcnow(),
                )
            )
        if chained:
            parent_id = job_id
