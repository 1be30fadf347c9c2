"""examples/orders end to end: the order saga over real services of the
example, on the embedded default (SQLite broker and store), and on
PostgreSQL with NATS."""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest
from examples.orders import Outcomes, run

POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")
NATS_URL = os.environ.get("HERALD_TEST_NATS", "nats://127.0.0.1:4222")


def check(outcomes: Outcomes, happy: int) -> None:
    by_kind = {order_id.split("-")[0]: outcome for order_id, outcome in outcomes.orders.items()}
    assert [o for i, o in outcomes.orders.items() if i.startswith("ok-")] == ["completed"] * happy
    assert by_kind["declined"] == "cancelled: payment failed: card declined"
    assert by_kind["hang"] == "cancelled: payment timed out"
    assert by_kind["late"] == "cancelled: payment timed out"
    assert by_kind["no"] == "cancelled: out of stock: 1 poster left"
    payments = {order_id.split("-")[0]: status for order_id, status in outcomes.payments.items()}
    assert payments == {"ok": "charged", "declined": "declined", "hang": "none", "late": "refunded",
                        "no": "none"}
    # only the completed orders keep their books; every cancelled one gave its reservation back
    assert outcomes.stock == {"book": 50 - happy, "poster": 1}


async def test_order_saga_on_the_embedded_default() -> None:
    outcomes = await run(happy_orders=5, payment_timeout=1.0)
    check(outcomes, 5)


async def test_order_saga_on_postgres_and_nats() -> None:
    schema = f"orders_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up postgresql`")
    try:
        outcomes = await run(NATS_URL, f"{POSTGRES_DSN}?schema={schema}", happy_orders=3,
                             payment_timeout=2.0)
        check(outcomes, 3)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
