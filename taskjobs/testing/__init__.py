"""Testing with taskjobs: expectations about jobs (``wait_for_job``, ``assert_job``), and a
pytest plugin (``taskjobs.testing.plugin``, on by default once taskjobs is installed) whose
``taskjobs_store`` fixture gives each test a fresh store and tracks pytest-celery's apps in it."""

from __future__ import annotations

from taskjobs.testing.expect import JobExpectationError, assert_job, message_texts, wait_for_job

__all__ = ["JobExpectationError", "assert_job", "message_texts", "wait_for_job"]
