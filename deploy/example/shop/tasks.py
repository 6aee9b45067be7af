"""A few realistic tasks: one that succeeds, one that fails, one that retries, one that reports
progress, and the steps of a chain and a group."""

from __future__ import annotations

import random
import time
from typing import Any

import taskjobs
from shop.celery import app


@app.task(name="shop.price_order")
def price_order(order_id: int, items: int) -> dict[str, Any]:
    """Succeeds: the order's total."""
    time.sleep(random.uniform(0.05, 0.3))
    return {"order": order_id, "total": round(items * 9.95, 2)}


@app.task(name="shop.charge_card")
def charge_card(priced: dict[str, Any]) -> dict[str, Any]:
    """The chain's second step; one card in ten is declined."""
    time.sleep(random.uniform(0.05, 0.2))
    if random.random() < 0.1:
        raise PermissionError(f"card declined for order {priced['order']}")
    return {**priced, "charged": True}


@app.task(name="shop.ship_parcel")
def ship_parcel(order_id: int, parcel: int) -> str:
    """A group member: ships one parcel."""
    time.sleep(random.uniform(0.05, 0.4))
    return f"order {order_id} parcel {parcel} shipped"


@app.task(name="shop.notify_carrier", bind=True, max_retries=3, default_retry_delay=1)
def notify_carrier(self: Any, order_id: int) -> str:
    """Retries: the carrier's API times out at the first attempts."""
    if self.request.retries < random.randint(0, 2):
        raise self.retry(exc=TimeoutError(f"carrier API timed out for order {order_id}"))
    return f"carrier notified of order {order_id}"


@app.task(name="shop.build_report", bind=True)
def build_report(self: Any, pages: int) -> int:
    """Reports progress, one message a page."""
    for page in range(1, pages + 1):
        time.sleep(0.1)
        taskjobs.progress(f"rendered page {page} of {pages}")
    return pages


@app.task(name="shop.import_catalog")
def import_catalog(rows: int) -> int:
    """Fails: the catalog feed is malformed."""
    raise ValueError(f"catalog feed malformed at row {rows}")
