"""Which apps are tracked, and which tracker an event belongs to.

An app is tracked once ``install(app)`` made its tracker, or, for its ``JobTask`` tasks alone,
from the first event of one. A task's events belong to the tracker of the task's app; a publish
to the tracker of the app whose ``send_task`` (or ``JobTask.apply_async``) is running
(``publishing``): Celery's publish signal does not say which app publishes, and every publish of
an app goes through its ``send_task``, so a publish outside one is an untracked app's.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from weakref import WeakKeyDictionary

from celery import Celery, Task

from taskjobs import config
from taskjobs.celery.message import whole
from taskjobs.celery.tracker import Tracker
from taskjobs.errors import ConfigurationError
from taskjobs.settings import Settings

logger = logging.getLogger("taskjobs")

# The trackers of installed apps: every task of theirs is tracked.
_installed: WeakKeyDictionary[Celery, Tracker] = WeakKeyDictionary()
# The trackers of apps whose ``JobTask`` tasks are tracked without install().
_base_class: WeakKeyDictionary[Celery, Tracker] = WeakKeyDictionary()
_lock = threading.Lock()
# The apps whose publishes this thread is inside, innermost last.
_publishing = threading.local()


def install(app: Celery) -> Tracker:
    """The tracker of ``app``, made now or (settings read again) the one it has."""
    settings = Settings.load(app.conf)
    with _lock:
        tracker = _installed.get(app) or _base_class.get(app)
        if tracker is None:
            tracker = Tracker(str(app.main or "celery"), settings)
        tracker.settings = settings  # a bad URL is refused here, before anything changes
        _base_class.pop(app, None)
        _installed[app] = tracker
    config.configure_default(settings.database_url)
    return tracker


def installed(app: Any) -> Tracker | None:
    """The tracker of ``app`` if it was installed."""
    return _installed.get(app) if app is not None else None


def trackers() -> list[Tracker]:
    """Every tracker of this process."""
    with _lock:
        return [*_installed.values(), *_base_class.values()]


def of_task(task: Task | None) -> Tracker | None:
    """The tracker of the app ``task`` belongs to, whether or not the task's name is tracked:
    the installed app's, or for a ``JobTask`` the app's own, made on first use."""
    if task is None:
        return None
    app = task.app
    tracker = _installed.get(app)
    if tracker is not None or not getattr(task, "taskjobs_tracked", False):
        return tracker
    tracker = _base_class.get(app)
    if tracker is None:
        try:
            settings = Settings.load(app.conf)
            config.configure_default(settings.database_url)
        except ConfigurationError:  # a task's outcome never depends on taskjobs' settings
            logger.exception("taskjobs: not tracking the JobTask tasks of app %s", app.main)
            return None
        with _lock:
            tracker = _base_class.setdefault(app, Tracker(str(app.main or "celery"), settings))
    return tracker


def tracking(task: Task | None, nesting: Any = None) -> tuple[Tracker, bool] | None:
    """Whether events of ``task`` are recorded: its tracker, and whether only into a job that
    exists. A task whose name is not tracked (Celery's own ``celery.accumulate``, say) is
    followed when it runs as part of a replacement (``nesting`` > 0): it may carry the id of
    the job it replaced, and that job ends when it does."""
    tracker = of_task(task)
    if tracker is None:
        return None
    if tracker.settings.tracks(getattr(task, "name", None)):
        return tracker, False
    return (tracker, True) if whole(nesting) else None


def for_name(name: str | None, app: Any) -> Tracker | None:
    """The tracker under which a task known only by name is tracked in ``app``: the app's,
    if it tracks the name, else that of a ``JobTask`` of that name in it."""
    tracker = of_task(task_named(name, app)) or installed(app)
    return tracker if tracker is not None and tracker.settings.tracks(name) else None


def task_named(name: str | None, app: Any) -> Task | None:
    """The task registered under ``name`` in ``app``, if it has one."""
    return app.tasks.get(name) if name and app is not None else None


def enter_publishing(app: Celery) -> None:
    """From here to ``leave_publishing()``, this thread publishes through ``app``."""
    stack: list[Celery] = _publishing.__dict__.setdefault("apps", [])
    stack.append(app)


def leave_publishing() -> None:
    """The end of the publish ``enter_publishing`` began."""
    _publishing.apps.pop()


def publishing_app() -> Celery | None:
    """The app whose publish this thread is inside, if any."""
    stack: list[Celery] = _publishing.__dict__.get("apps") or []
    return stack[-1] if stack else None
