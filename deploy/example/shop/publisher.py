"""Keeps sending the example's work, as a web shop would: orders (a chain: price, then
charge), their parcels (a group), carrier notices (retries), reports (progress) and catalog
imports (failures).

    python -m shop.publisher [--count N] [--interval SECONDS]

Runs until stopped, or until it has sent ``--count`` rounds.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

from celery import chain, group

from shop.tasks import (
    build_report,
    charge_card,
    import_catalog,
    notify_carrier,
    price_order,
    ship_parcel,
)


def send_round(order_id: int) -> list[str]:
    """One round of work; returns the ids published."""
    items = random.randint(1, 5)
    sent = [chain(price_order.s(order_id, items), charge_card.s()).apply_async()]
    sent.append(group(ship_parcel.s(order_id, parcel) for parcel in range(1, items + 1))())
    sent.append(notify_carrier.delay(order_id))
    if order_id % 2 == 0:
        sent.append(build_report.delay(3))
    if order_id % 3 == 0:
        sent.append(import_catalog.delay(order_id * 10))
    return [result.id for result in sent]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=0, help="rounds to send (0: forever)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    args = parser.parse_args()
    rounds = itertools.count(1) if args.count <= 0 else range(1, args.count + 1)
    for order_id in rounds:
        ids = send_round(order_id)
        print(f"round {order_id}: sent {len(ids)} ({', '.join(ids)})", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
