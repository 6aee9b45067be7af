"""What taskjobs reads of a Celery message: its headers, its delivery stamp, its lineage.

Celery hands receivers the same facts in three forms (message headers at publish, the request
dict a worker received, the request of a running task); these read each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskjobs.lifecycle import Lineage

# The message header that names a job's user.
USER_HEADER = "taskjobs_user"
# The message header with the message's delivery stamp (``model.delivery_stamp``).
DELIVERY_HEADER = "taskjobs_delivery"
# The message header saying its pending job was queued, not committed, when it was sent (the
# "async" publish mode): only then does a receipt record the request too.
QUEUED_HEADER = "taskjobs_queued"
# Celery's message header counting how deeply a task replaced another one (0: not at all).
NESTING_HEADER = "replaced_task_nesting"


def whole(value: Any) -> int:
    """A whole number from a message header or request field that may be missing or text."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def delivery(source: Any) -> int | None:
    """The delivery stamp of the message ``source`` (its headers, request dict or request)
    came from; None when its publisher did not stamp it."""
    value = source.get(DELIVERY_HEADER) if isinstance(source, Mapping) else None
    if value is None and not isinstance(source, Mapping):
        value = getattr(source, DELIVERY_HEADER, None)
    return whole(value) or None


def redelivered(request: Any) -> bool:
    """Whether the broker delivered this message before (to a worker that did not ack it)."""
    return bool((getattr(request, "delivery_info", None) or {}).get("redelivered"))


def nesting(request: Any) -> Any:
    """How deeply the task of ``request`` replaced another (its ``replaced_task_nesting``)."""
    return getattr(request, NESTING_HEADER, None)


def lineage(source: Mapping[str, Any]) -> Lineage:
    """Parent, root and group ids from message headers (or a received request's dict)."""
    return Lineage(source.get("parent_id"), source.get("root_id"), source.get("group"))


def request_lineage(request: Any) -> Lineage:
    """Parent, root and group ids of a running task's request."""
    return Lineage(request.parent_id, request.root_id, request.group)


def routing_key(request: Any) -> str | None:
    """The routing key a worker received the message under: the job's queue."""
    key: str | None = (getattr(request, "delivery_info", None) or {}).get("routing_key")
    return key
