"""Run the order saga: all four services in this process (`run`), or one
service as a process of its own with its HTTP API (`serve`).

    python -m examples.orders                     # every service here, some orders, how each ended
    python -m examples.orders payment --broker kafka://127.0.0.1:9092 \\
        --store postgresql://herald:herald@127.0.0.1:5432/herald?schema=orders --port 8003

Start the processes one at a time (each sets up its own tables), the
consumers before anyone places an order; drive them with
`workload.HttpOrders` (docs/outbox-and-sagas.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from .system import PAYMENT_TIMEOUT, SERVICES, OrderSystem
from .workload import LocalOrders, Outcomes, drive


async def run(
    broker_url: str | None = None,
    store_url: str | None = None,
    *,
    payment_timeout: float = PAYMENT_TIMEOUT,
    happy_orders: int = 6,
    timeout: float = 60.0,
) -> Outcomes:
    """Place `happy_orders` orders that complete, and one each that is declined,
    never answered (times out), answered too late (refunded), and out of stock,
    through the four services in this process. Defaults: a SQLite broker and
    store in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="herald-orders-") as tmp:
        system = OrderSystem(broker_url or f"sqlite:///{Path(tmp) / 'broker.db'}",
                             store_url or f"sqlite:///{Path(tmp) / 'store.db'}",
                             payment_timeout=payment_timeout)
        await system.start()
        try:
            return await drive(LocalOrders(system), happy=happy_orders, timeout=timeout)
        finally:
            await system.stop()


async def serve(service: str, broker: str, store: str, port: int, payment_timeout: float) -> None:
    """One service and its HTTP API on 127.0.0.1:`port` until Ctrl-C or SIGTERM; the
    service starts before the API answers and stops gracefully after it closed."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from .api import make_api

    system = OrderSystem(broker, store, (service,), payment_timeout=payment_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await system.start()
        try:
            yield
        finally:
            await system.stop()

    api = Starlette(routes=[Mount("/", app=make_api(system))], lifespan=lifespan)
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    # uvicorn raises the signal it caught again once it has shut down: ignored here, so a
    # graceful stop on SIGTERM ends with exit code 0 (it handles them while serving).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    await uvicorn.Server(config).serve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.orders", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service", nargs="?", choices=SERVICES,
                        help="serve this one service (default: run all here and print the outcomes)")
    parser.add_argument("--broker", metavar="URL")
    parser.add_argument("--store", metavar="URL", help="the shared tables: sqlite:///... or postgresql://...")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--payment-timeout", type=float, default=PAYMENT_TIMEOUT, metavar="SECONDS")
    args = parser.parse_args(argv)
    if args.service is not None:
        if not args.broker or not args.store:
            parser.error("a service needs --broker and --store (the same for all four)")
        asyncio.run(serve(args.service, args.broker, args.store, args.port, args.payment_timeout))
        return
    outcomes = asyncio.run(run(args.broker, args.store, payment_timeout=args.payment_timeout))
    for order_id, outcome in outcomes.orders.items():
        print(f"{order_id:>24}  {outcome:<45} payment: {outcomes.payments[order_id]}")
    print(f"stock left: {outcomes.stock}  ({outcomes.seconds:.1f} s)")
