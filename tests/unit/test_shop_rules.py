"""The shop's rules (seed 004, K4 K5 K6) on both stores: the shop's tables and
outboxes in SQLite or in PostgreSQL; the test id names which (`[sqlite]`,
`[postgres]`). Brokers are in memory: the App's own one and a second named
cluster, "north".

PostgreSQL must be running (`bash scripts/services.sh up postgresql`): a test
fails, never skips, when it is not.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from examples.shop import (
    BadQuantity,
    DuplicateOrder,
    Goods,
    GoodsShopped,
    NotFound,
    OutOfStock,
    RequestContext,
    ShopService,
    ShopSettings,
    ShopSystem,
    StoreService,
    build_shop,
    from_urls,
)
from examples.shop.service import outbox_table

from herald import App, UnknownCluster
from herald.store import store_from_url

POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")
SETTINGS = ShopSettings(clusters=("north",), relay_poll_interval=0.05, restock_below=1)


@dataclass
class Shop:
    backend: str
    system: ShopSystem
    store_url: str

    @property
    def shop(self) -> ShopService:
        return self.system.shop

    @property
    def store(self) -> StoreService:
        return self.system.store


async def _postgres(sql: str) -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up postgresql`")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Shop]:
    tag = uuid.uuid4().hex[:10]
    if request.param == "sqlite":
        # The store service's ledger in a file of its own: a test can read it
        # while a purchase's transaction holds the shop's (single) writer.
        store_url, ledger_url = f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'store.db'}"
    else:
        await _postgres("SELECT 1")
        store_url, ledger_url = f"{POSTGRES_DSN}?schema=shop_{tag}", f"{POSTGRES_DSN}?schema=store_{tag}"
    system = from_urls("memory://", store_url, clusters={"north": "memory://"}, ledger_url=ledger_url,
                       settings=SETTINGS)
    await system.start()
    try:
        yield Shop(request.param, system, store_url)
    finally:
        await system.stop()
        if request.param == "postgres":
            await _postgres(f'DROP SCHEMA IF EXISTS "shop_{tag}" CASCADE;'
                            f' DROP SCHEMA IF EXISTS "store_{tag}" CASCADE')


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _stocked(shop: Shop, stock: int = 5, price: int = 250) -> tuple[int, int]:
    user = await shop.shop.add_user("ann")
    goods = await shop.shop.add_goods("tea", price, stock)
    return goods.id, user


# -- the entity ---------------------------------------------------------------------------
def test_k6_goods_shopping_raises_the_event_in_the_entity() -> None:
    """K6: the entity raises the domain event; a refused purchase changes and raises nothing."""
    goods = Goods(3, "tea", 250, 5)
    order = goods.shopping(7, 2, "o-1", cluster="default", request_id="r-1")
    assert (goods.stock, order.amount, order.stock_left) == (3, 500, 3)
    assert goods.pending_events() == [GoodsShopped(goods_id=3, order_id="o-1", user_id=7, quantity=2,
                                                   price=250, amount=500, stock_left=3)]
    with pytest.raises(OutOfStock, match="goods 3 has 3 in stock; cannot sell 4"):
        goods.shopping(7, 4, "o-2", cluster="default", request_id="r-2")
    for bad in (0, -1, True, 2.0, "1", 10**6):
        with pytest.raises(BadQuantity, match="quantity must be a whole number"):
            goods.shopping(7, bad, "o-3", cluster="default", request_id="r-3")  # type: ignore[arg-type]
    assert goods.stock == 3 and len(goods.pending_events()) == 1


# -- K6: published after commit, never on rollback -----------------------------------------
async def test_k6_event_is_published_only_after_the_commit(shop: Shop) -> None:
    """K6: while the purchase's transaction is open (relays running) nothing reaches the
    store; right after the commit the event is published and recorded."""
    goods_id, user = await _stocked(shop)
    async with shop.shop.purchase(goods_id, user, 2) as order:
        await asyncio.sleep(0.6)  # relays poll every 0.05 s: they had every chance
        assert await shop.store.sales() == []
        assert shop.store.counts["sales"] == 0
        last_moment_before_commit = time.time()

    async def recorded() -> bool:
        return len(await shop.store.sales()) == 1

    await _until(recorded, "the sale after the commit")
    (sale,) = await shop.store.sales()
    assert sale.order_id == order.id and sale.quantity == 2 and sale.amount == 500
    assert sale.received_at > last_moment_before_commit
    assert (await shop.shop.goods(goods_id)).stock == 3
    assert await shop.shop.pending() == {"default": 0, "north": 0}


async def test_k6_rolled_back_purchase_publishes_nothing(shop: Shop) -> None:
    """K6: buying more than the stock is a clear error, and a failure after the event was
    raised rolls everything back; neither publishes anything, the next purchase does."""
    goods_id, user = await _stocked(shop, stock=3)
    with pytest.raises(OutOfStock, match=f"goods {goods_id} has 3 in stock; cannot sell 4"):
        await shop.shop.buy(goods_id, user, 4)

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with shop.shop.purchase(goods_id, user, 2, order_id="doomed"):
            raise Crash  # the event was raised, the row changed: both must vanish
    assert (await shop.shop.goods(goods_id)).stock == 3
    assert await shop.shop.storage.order("doomed") is None
    assert await shop.shop.pending() == {"default": 0, "north": 0}

    good = await shop.shop.buy(goods_id, user, 3)  # a witness: the pipeline itself works

    async def witness() -> bool:
        return len(await shop.store.sales()) >= 1

    await _until(witness, "the witness purchase")
    await asyncio.sleep(0.3)  # anything wrongly published would have arrived by now
    assert [s.order_id for s in await shop.store.sales()] == [good.id]
    assert (await shop.shop.goods(goods_id)).stock == 0
    with pytest.raises(OutOfStock, match="has 0 in stock"):
        await shop.shop.buy(goods_id, user, 1)
    assert (await shop.shop.stats()).orders == 1


async def test_k6_clear_errors_change_nothing(shop: Shop) -> None:
    """Unknown goods or user, a reused order id, a bad quantity: clear errors, nothing written."""
    goods_id, user = await _stocked(shop)
    with pytest.raises(NotFound, match="no goods 999"):
        await shop.shop.buy(999, user, 1)
    with pytest.raises(NotFound, match="no user 999"):
        await shop.shop.buy(goods_id, 999, 1)
    with pytest.raises(BadQuantity):
        await shop.shop.buy(goods_id, user, 0)
    await shop.shop.buy(goods_id, user, 1, order_id="once")
    with pytest.raises(DuplicateOrder, match="'once' was placed before"):
        await shop.shop.buy(goods_id, user, 1, order_id="once")
    assert (await shop.shop.goods(goods_id)).stock == 4
    assert (await shop.shop.stats()).orders == 1


# -- K4: the request context travels ----------------------------------------------------------
async def test_k4_request_context_arrives_with_the_event(shop: Shop) -> None:
    """K4: request id, trace id and the chosen request headers reach the consumer; headers
    that were not chosen do not."""
    goods_id, user = await _stocked(shop)
    trace = "0af7651916cd43dd8448eb211c80319c"
    request = RequestContext.from_request_headers({
        "X-Request-Id": "req-42", "traceparent": f"00-{trace}-b7ad6b7169203331-01",
        "X-User-Agent": "shop-cli/1.0", "x-client": "kiosk-7", "Authorization": "Bearer secret",
    })
    order = await shop.shop.buy(goods_id, user, 1, request=request)

    async def recorded() -> bool:
        return len(await shop.store.sales()) == 1

    await _until(recorded, "the sale")
    (sale,) = await shop.store.sales()
    assert (sale.order_id, sale.request_id, sale.trace_id) == (order.id, "req-42", trace)
    assert sale.correlation_id == "req-42"  # the request id links everything the request caused
    assert sale.headers == {"x-user-agent": "shop-cli/1.0", "x-client": "kiosk-7", "x-action": "购买"}


def test_k4_request_context_from_headers() -> None:
    """K4: a missing request id or trace is made up; a malformed trace starts a new one
    (W3C); a malformed request id is refused."""
    made = RequestContext.from_request_headers({})
    assert len(made.request_id) == 32 and len(made.trace_id) == 32 and made.headers == {}
    bad_trace = RequestContext.from_request_headers({"traceparent": "00-zz-yy-01"})
    assert len(bad_trace.trace_id) == 32 and bad_trace.traceparent != "00-zz-yy-01"
    zeros = RequestContext.from_request_headers({"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"})
    assert zeros.trace_id != "0" * 32
    for bad in ("", "has space", "x" * 129, "ünïcode"):
        with pytest.raises(ValueError, match="x-request-id must be"):
            RequestContext.from_request_headers({"x-request-id": bad})
    assert RequestContext.from_request_headers({"Accept-Language": "zh"}, ("accept-language",)).headers == {
        "accept-language": "zh"}


# -- K5: named producer clusters ------------------------------------------------------------
async def test_k5_purchase_goes_to_the_cluster_it_names(shop: Shop) -> None:
    """K5: each purchase is published through the cluster it names (its own outbox and
    relay), and only there: the store's subscriber on that cluster records it."""
    goods_id, user = await _stocked(shop, stock=10)
    north = await shop.shop.buy(goods_id, user, 1, cluster="north")
    default = await shop.shop.buy(goods_id, user, 2)
    named_default = await shop.shop.buy(goods_id, user, 3, cluster="default")

    async def recorded() -> bool:
        return len(await shop.store.sales()) == 3

    await _until(recorded, "three sales")
    clusters = {s.order_id: s.cluster for s in await shop.store.sales()}
    assert clusters == {north.id: "north", default.id: "default", named_default.id: "default"}
    assert (await shop.store.stats()).by_cluster == {"north": 1, "default": 2}
    assert shop.system.shop.relays["north"].stats.by_topic == {"shop-goods-events": 1}
    assert shop.system.shop.relays["default"].stats.by_topic == {"shop-goods-events": 2}
    assert outbox_table("north") != outbox_table("default") == "shop_outbox"
    assert outbox_table("华北二").startswith("shop_outbox_")  # any name: a safe table name


async def test_k5_unknown_cluster_is_a_clear_error_at_the_call(shop: Shop) -> None:
    """K5 FIX: an unknown cluster name is an error at the call (freedom: a panic in a
    background goroutine), before anything is written."""
    goods_id, user = await _stocked(shop)
    with pytest.raises(UnknownCluster, match="unknown cluster 'atlantis'; this App has default, north"):
        await shop.shop.buy(goods_id, user, 1, cluster="atlantis")
    with pytest.raises(UnknownCluster, match="unknown cluster 'atlantis'"):
        await shop.system.shop_app.publish("anything", GoodsShopped(
            goods_id=1, order_id="x", user_id=1, quantity=1, price=1, amount=1, stock_left=0),
            cluster="atlantis")
    assert (await shop.shop.goods(goods_id)).stock == 5
    assert (await shop.shop.stats()).orders == 0
    assert await shop.shop.pending() == {"default": 0, "north": 0}


async def test_k5_cluster_the_shop_was_not_set_up_for(shop: Shop) -> None:
    """K5: a cluster the App has but the shop was not told to publish to is refused at
    the call; settings naming a cluster the App lacks fail when the shop is built."""
    app = App("shop", broker="memory://", clusters={"north": "memory://", "south": "memory://"})
    store = store_from_url(shop.store_url)
    other = build_shop(app, store, ShopSettings(clusters=("north",)))
    with pytest.raises(UnknownCluster, match="cluster 'south'; it publishes to default, north"):
        other.outbox_for("south")
    with pytest.raises(UnknownCluster, match="unknown cluster 'west'"):
        build_shop(App("shop", broker="memory://"), store, ShopSettings(clusters=("west",)))
    with pytest.raises(ValueError, match="not 'default'"):
        ShopSettings(clusters=("default",))


# -- no overselling -------------------------------------------------------------------------
async def test_k6_concurrent_buyers_never_oversell(shop: Shop) -> None:
    """Many buyers at once on one goods, through two shop instances with stores of their
    own (two processes' worth): the stock never goes below zero, every sale that
    committed is published once, every refusal is clean."""
    goods_id, user = await _stocked(shop, stock=20)
    second_app = App("shop", broker=shop.system.shop_app.broker,
                     clusters={"north": shop.system.shop_app.cluster("north")})
    second_store = store_from_url(shop.store_url)
    second = build_shop(second_app, second_store, SETTINGS, close_store=True)
    await second_app.start()
    try:
        async def buyer(n: int) -> int:
            service = shop.shop if n % 2 else second
            try:
                order = await service.buy(goods_id, user, 1 + n % 3, cluster="north" if n % 5 == 0 else None)
            except OutOfStock:
                return 0
            return order.quantity

        sold = await asyncio.gather(*(buyer(n) for n in range(30)))
        assert 0 < sum(sold) <= 20 and sold.count(0) > 0
        goods = await shop.shop.goods(goods_id)
        assert goods.stock == 20 - sum(sold) >= 0
        assert goods.stock < 3  # buyers kept coming until none fit
        orders = await shop.shop.storage.orders()
        assert sum(o.quantity for o in orders) == sum(sold)
        assert sorted(o.stock_left for o in orders) == sorted({o.stock_left for o in orders})  # no two alike

        async def all_recorded() -> bool:
            return len(await shop.store.sales()) == len(orders)

        await _until(all_recorded, "every committed sale")
        sales = await shop.store.sales()
        assert sorted(s.order_id for s in sales) == sorted(o.id for o in orders)
        # restock_below=1: a request once the stock is at 1 or less, with the lowest seen
        assert await shop.store.restock_requests() == ({goods_id: goods.stock} if goods.stock <= 1 else {})
    finally:
        await second_app.stop()
