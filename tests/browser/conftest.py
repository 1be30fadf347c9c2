"""A running shop for the dashboard to show, and a headless Chromium to look at it.

The gateway runs under uvicorn on a free port in a thread of its own (with
its own event loop), because Selenium's calls block. The shop:

- checkout (the gateway's App), billing and shipping: three Apps on one
  SQLite broker file; an order placed by checkout is charged by billing, which
  publishes a payment, which shipping turns into a shipment, all through
  `ctx.publish`, so the three events share one correlation id;
- a ledger subscriber of checkout that fails (while `ledger.healthy` is
  False), so invoices end in the dead letters;
- an analytics group that read the clicks topic once and stopped, and a
  heartbeat that keeps publishing clicks: lag that grows, a rate that is not 0;
- a SQLite event store with the stream order-1.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from herald import App, Context, Event, RetryPolicy
from herald.http import create_gateway
from herald.store.sqlite import SqliteEventStore

T = TypeVar("T")
ADMIN_TOKEN = "dashboard-admin-token-0123456789"
READ_TOKEN = "dashboard-read-token-0123456789"
FAST = RetryPolicy(attempts=1, backoff=0.001, stages=0)
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
INSTALL = ("headless Chromium is needed for tests/browser: run `bash scripts/browser.sh` "
           "(installs Debian's chromium and chromium-driver) and `pip install selenium` "
           "(part of herald's dev extra: pip install -e '.[dev]')")


class OrderPlaced(Event, type="shop.order.placed", subject="order_id"):
    order_id: str
    total: float


class PaymentCharged(Event, type="shop.payment.charged", subject="order_id"):
    order_id: str
    amount: float


class ShipmentSent(Event, type="shop.shipment.sent", subject="order_id"):
    order_id: str
    carrier: str


class InvoiceIssued(Event, type="shop.invoice.issued", subject="invoice_id"):
    invoice_id: int


class Clicked(Event, type="shop.page.clicked"):
    page: str


@dataclass
class Ledger:
    healthy: bool = False
    handled: list[str] = field(default_factory=list)  # event ids


@dataclass
class Shop:
    url: str
    loop: asyncio.AbstractEventLoop
    checkout: App
    store: SqliteEventStore
    ledger: Ledger
    correlation_id: str  # of the order -> payment -> shipment chain
    invoice_ids: list[str]

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        """Run a coroutine on the shop's loop (where its Apps live) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


async def _until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _value(check()):
        if loop.time() > deadline:
            raise AssertionError(f"the shop never got ready: {what}")
        await asyncio.sleep(0.02)


async def _open_shop(tmp: Path, stack: list[Any]) -> Shop:
    broker = f"sqlite:///{tmp}/herald.db"
    checkout = App("checkout", broker=broker, retry=FAST)
    billing = App("billing", broker=broker)
    shipping = App("shipping", broker=broker)
    analytics = App("analytics", broker=broker)
    ledger = Ledger()
    shipped = asyncio.Event()

    @checkout.subscriber("invoices", group="ledger")
    async def book(invoice: InvoiceIssued, ctx: Context) -> None:
        if not ledger.healthy:
            raise RuntimeError(f"ledger is closed: cannot book invoice {invoice.invoice_id}")
        ledger.handled.append(ctx.event_id)

    @billing.subscriber("orders", group="billing")
    async def charge(order: OrderPlaced, ctx: Context) -> None:
        await asyncio.sleep(0.03)  # the trace shows time passing between services
        await ctx.publish("payments", PaymentCharged(order_id=order.order_id, amount=order.total),
                          key=order.order_id)

    @shipping.subscriber("payments", group="shipping")
    async def ship(payment: PaymentCharged, ctx: Context) -> None:
        await asyncio.sleep(0.05)
        await ctx.publish("shipments", ShipmentSent(order_id=payment.order_id, carrier="post"),
                          key=payment.order_id)
        shipped.set()

    @shipping.subscriber("shipments", group="tracking")
    async def track(shipment: ShipmentSent) -> None:
        pass

    clicks_seen: list[str] = []

    @analytics.subscriber("clicks", group="analytics")
    async def count(click: Clicked) -> None:
        clicks_seen.append(click.page)

    store = SqliteEventStore(str(tmp / "events.db"))
    gateway = create_gateway(checkout, tokens=[ADMIN_TOKEN, "read:" + READ_TOKEN], store=store)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(gateway, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stack.append((server, serving, sock))
    await _until(lambda: bool(server.started), "uvicorn started")
    for app in (billing, shipping, analytics):
        await app.start()
        stack.append(app)

    # lag: analytics reads two clicks, stops; the heartbeat's clicks then wait for it
    await checkout.publish_batch("clicks", [Clicked(page="/"), Clicked(page="/cart")])
    await _until(lambda: len(clicks_seen) == 2, "analytics read the first clicks")
    await analytics.stop()

    order = checkout.envelope(OrderPlaced(order_id="order-1", total=42.5))
    await checkout.publish("orders", order, key="order-1")
    await store.connect()
    await store.append("order-1", [order])
    await store.append("order-1", [checkout.envelope(OrderPlaced(order_id="order-1", total=40.0),
                                                     type="shop.order.corrected")])
    await store.append("order-2", [checkout.envelope(OrderPlaced(order_id="order-2", total=7.0))])
    await asyncio.wait_for(shipped.wait(), 15)

    invoice_ids = [await checkout.publish("invoices", InvoiceIssued(invoice_id=n), key=f"inv-{n}")
                   for n in (1, 2, 3)]

    async def three_dead() -> bool:
        admin = checkout.admin()
        return len(await admin.read_topic("fail-invoices", after=0, limit=10)) == 3

    await _until(three_dead, "three invoices dead-lettered")

    async def heartbeat() -> None:
        n = 0
        while True:
            await checkout.publish("clicks", Clicked(page=f"/item/{n % 7}"))
            n += 1
            await asyncio.sleep(0.25)

    stack.append(asyncio.create_task(heartbeat()))
    return Shop(f"http://127.0.0.1:{sock.getsockname()[1]}", asyncio.get_running_loop(), checkout,
                store, ledger, order.correlationid or order.id, invoice_ids)


async def _value(result: bool | Awaitable[bool]) -> bool:
    return await result if inspect.isawaitable(result) else result


async def _close_shop(stack: list[Any]) -> None:
    for item in reversed(stack):
        if isinstance(item, asyncio.Task):
            item.cancel()
        elif isinstance(item, App):
            await item.stop(timeout=5)
        else:
            server, serving, sock = item
            server.should_exit = True
            await asyncio.wait_for(serving, 10)
            sock.close()


@pytest.fixture(scope="package")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="shop", daemon=True)
    thread.start()
    stack: list[Any] = []
    tmp = tmp_path_factory.mktemp("shop")
    try:
        yield asyncio.run_coroutine_threadsafe(_open_shop(tmp, stack), loop).result(60)
    finally:
        asyncio.run_coroutine_threadsafe(_close_shop(stack), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _chromium() -> tuple[str, str]:
    """The chromium and chromedriver to use ($HERALD_CHROMIUM, $HERALD_CHROMEDRIVER, else PATH)."""
    binary = os.environ.get("HERALD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("HERALD_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for name, path in (("chromium", binary), ("chromedriver", driver)):
        if not path or not os.access(path, os.X_OK):
            pytest.fail(f"no {name} found{f' at {path}' if path else ''}. {INSTALL}", pytrace=False)
    assert binary is not None
    return binary, driver


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Chromium under Selenium; fails (never skips) when either is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"the selenium package is missing. {INSTALL}", pytrace=False)
    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--force-device-scale-factor=1", "--lang=en-US",
                     "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver path is given, so Selenium Manager never goes online for one.
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(20)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
