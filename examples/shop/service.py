"""The shop and the store service of seed 004.

```python
shop_app = App("shop", broker="sqlite:///herald.db", clusters={"north": "sqlite:///north.db"})
store = store_from_url("sqlite:///shop.db")          # or postgresql://...?schema=shop
shop = build_shop(shop_app, store, ShopSettings(clusters=("north",)))
async with shop_app:                                # connects, creates tables, starts the relays
    order = await shop.buy(goods_id=1, user_id=7, quantity=2, cluster="north",
                           request=RequestContext.from_request_headers(request.headers))
```

- K6: `Goods.shopping` raises `GoodsShopped` in the entity; a unit of work
  writes the goods row, the order and the outbox row in one store
  transaction; an `OutboxRelay` publishes after the commit. A purchase that
  fails (out of stock, or anything raised before the commit) leaves no row
  and publishes nothing.
- K5: one outbox table and one relay per named cluster of the App; a
  purchase picks its cluster by name, and an unknown name is
  `UnknownCluster` at the call, before anything is written.
- K4: the request context (request id, trace, chosen headers) goes into the
  outbox row as message headers and envelope attributes; the store service
  rebuilds it with `RequestContext.from_message(ctx)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from herald import App, Broker, Context, RetryPolicy, UnknownCluster, from_url
from herald.store import EventStore, Outbox, OutboxRelay, UnitOfWork, envelope_of, store_from_url

from .context import CARRIED_HEADERS, RequestContext
from .events import GOODS_TOPIC, GoodsShopped
from .goods import Goods, Order, OutOfStock, ShopError, check_quantity
from .storage import LedgerCounts, LedgerStorage, NotFound, Sale, ShopCounts, ShopStorage

log = logging.getLogger("examples.shop")
DEFAULT_CLUSTER = "default"  # herald's name for the App's own broker
DEFAULT_RETRY = RetryPolicy(attempts=3, backoff=0.05, stages=2, stage_delay=1.0)


class DuplicateOrder(ShopError):
    """An order id that was used before (a client's retry of a purchase that went through)."""


@dataclass(frozen=True, slots=True)
class ShopSettings:
    """`clusters`: the App's named clusters the shop publishes to (besides its
    own broker) and the store consumes from. `carried_headers`: the request
    headers that travel with the events (K4). `restock_below`: the store asks
    for a restock when a sale leaves this many or fewer."""

    clusters: tuple[str, ...] = ()
    carried_headers: tuple[str, ...] = CARRIED_HEADERS
    action: str = "购买"  # the seed's x-action header: "buy"
    restock_below: int = 2
    topic: str = GOODS_TOPIC
    group: str = "store"
    relay_poll_interval: float = 0.2
    retry: RetryPolicy = field(default_factory=lambda: DEFAULT_RETRY)

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.clusters, str) or not all(isinstance(c, str) and c for c in self.clusters):
            problems.append(f"clusters must be a tuple of names, got {self.clusters!r}")
        elif DEFAULT_CLUSTER in self.clusters or len(set(self.clusters)) != len(self.clusters):
            problems.append(f"clusters must be distinct and not {DEFAULT_CLUSTER!r} (the App's own broker)")
        if isinstance(self.restock_below, bool) or not isinstance(self.restock_below, int) \
                or self.restock_below < 0:
            problems.append(f"restock_below must be an integer >= 0, got {self.restock_below!r}")
        if not self.relay_poll_interval > 0:
            problems.append(f"relay_poll_interval must be > 0 seconds, got {self.relay_poll_interval!r}")
        if problems:
            raise ValueError("ShopSettings: " + "; ".join(problems))

    def cluster_names(self) -> tuple[str, ...]:
        return (DEFAULT_CLUSTER, *self.clusters)


def outbox_table(cluster: str) -> str:
    """One outbox table per cluster: its relay publishes only to that cluster.
    Cluster names may be anything ("华北二"), table names may not: a digest."""
    if cluster == DEFAULT_CLUSTER:
        return "shop_outbox"
    return "shop_outbox_" + hashlib.sha1(cluster.encode()).hexdigest()[:12]


class ShopService:
    """Goods, users and purchases. Safe from several tasks."""

    def __init__(self, app: App, store: EventStore, settings: ShopSettings) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        self.storage = ShopStorage(store)
        self.outboxes = {name: Outbox(store, table=outbox_table(name), source=app.name)
                         for name in settings.cluster_names()}
        self.relays: dict[str, OutboxRelay] = {}
        self.counts: Counter[str] = Counter()  # this process's purchases, for the summary
        self.last_counts: ShopCounts | None = None

    async def open(self) -> None:
        """Create the tables and start one relay per cluster (the App's brokers are connected)."""
        await self.store.connect()
        await self.storage.setup()
        for name, outbox in self.outboxes.items():
            await outbox.setup()
            relay = OutboxRelay(self.store, self.app.cluster(None if name == DEFAULT_CLUSTER else name),
                                table=outbox.table, poll_interval=self.settings.relay_poll_interval,
                                name=f"shop-{outbox.table}-{uuid.uuid4().hex[:8]}")
            await relay.start()
            self.relays[name] = relay

    async def stop_relays(self) -> None:
        """Stop publishing (rows left wait in the outbox for the next start)."""
        relays, self.relays = self.relays, {}
        for relay in relays.values():
            await relay.stop()

    # -- K5: the cluster a purchase publishes to -----------------------------------------
    def outbox_for(self, cluster: str | None) -> tuple[str, Outbox]:
        """The cluster's name and outbox; UnknownCluster (herald's) when the App has
        no such cluster or the shop was not set up to publish there."""
        name = cluster or DEFAULT_CLUSTER
        self.app.cluster(cluster)  # raises UnknownCluster naming the App's clusters
        outbox = self.outboxes.get(name)
        if outbox is None:
            raise UnknownCluster(
                f"the shop does not publish to cluster {name!r}; it publishes to "
                f"{', '.join(self.settings.cluster_names())} (ShopSettings.clusters)"
            )
        return name, outbox

    # -- K6: buying ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def purchase(
        self,
        goods_id: int,
        user_id: int,
        quantity: int,
        *,
        request: RequestContext | None = None,
        cluster: str | None = None,
        order_id: str | None = None,
    ) -> AsyncIterator[Order]:
        """One purchase as one store transaction, open while the block runs:

        ```python
        async with shop.purchase(1, 7, 2) as order:
            ...   # not committed yet: nothing in any broker; raise to undo it all
        ```
        Raises UnknownCluster, BadQuantity, NotFound (goods or user),
        DuplicateOrder or OutOfStock before the block runs; then nothing changed.
        """
        check_quantity(quantity)
        name, outbox = self.outbox_for(cluster)
        request = request or RequestContext.new()
        order_id = order_id or uuid.uuid4().hex
        try:
            async with outbox.unit_of_work(self.settings.topic) as uow:
                if await self.storage.order(order_id, uow.tx) is not None:
                    raise DuplicateOrder(f"order {order_id!r} was placed before")
                if not await self.storage.user_exists(uow.tx, user_id):
                    raise NotFound(f"no user {user_id}")
                goods = await self.storage.goods_for_update(uow.tx, goods_id)  # locked to commit
                order = goods.shopping(user_id, quantity, order_id, cluster=name,
                                       request_id=request.request_id)
                await self.storage.save_goods(uow.tx, goods)
                await self.storage.add_order(uow.tx, order)
                uow.track(goods)
                await self._queue_with_context(uow, goods, request)
                yield order
        except OutOfStock:
            self.counts["refused_out_of_stock"] += 1
            raise
        self.counts["orders"] += 1
        self.counts[f"orders_via_{name}"] += 1
        self.counts["units"] += quantity

    async def buy(
        self,
        goods_id: int,
        user_id: int,
        quantity: int,
        *,
        request: RequestContext | None = None,
        cluster: str | None = None,
        order_id: str | None = None,
    ) -> Order:
        """Buy and commit; GoodsShopped is published after the commit (see `purchase`)."""
        async with self.purchase(goods_id, user_id, quantity, request=request, cluster=cluster,
                                 order_id=order_id) as order:
            pass
        return order

    async def _queue_with_context(self, uow: UnitOfWork, goods: Goods, request: RequestContext) -> None:
        """What `uow.track(goods)` does on commit, plus the request context (K4):
        herald's unit of work takes no headers, so the raised events are written
        here, in the same transaction, with the request's headers, trace and
        request id (as correlation id). The entity's queue is then empty."""
        subject = goods.identity()
        envelopes = [
            msgspec.structs.replace(
                envelope_of(event, self.app.name, subject=subject),
                correlationid=request.request_id, traceparent=request.traceparent,
            )
            for event in goods.pending_events()
        ]
        await uow.outbox.add_many(uow.tx, uow.topic, envelopes, key=subject,
                                  headers=request.message_headers(self.settings.action))
        goods.clear_events()

    # -- reading and setting up --------------------------------------------------------------
    async def add_user(self, name: str) -> int:
        return await self.storage.add_user(name)

    async def add_goods(self, name: str, price: int, stock: int) -> Goods:
        return await self.storage.add_goods(name, price, stock)

    async def goods(self, goods_id: int) -> Goods:
        return await self.storage.goods(goods_id)

    async def all_goods(self) -> list[Goods]:
        return await self.storage.all_goods()

    async def stats(self) -> ShopCounts:
        self.last_counts = await self.storage.counts()
        return self.last_counts

    async def pending(self) -> dict[str, int]:
        """Outbox rows not yet confirmed by the broker, per cluster."""
        return {name: (await outbox.status()).pending for name, outbox in self.outboxes.items()}

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every outbox is empty (all events published)."""
        for relay in self.relays.values():
            await relay.drain(timeout)


class StoreService:
    """The consumer: a sales ledger with each sale's request context, and
    restock requests when stock runs low. Safe from several tasks."""

    def __init__(self, app: App, store: EventStore, settings: ShopSettings) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        self.ledger = LedgerStorage(store)
        self.counts: Counter[str] = Counter()
        self.last_counts: LedgerCounts | None = None

    async def open(self) -> None:
        await self.store.connect()
        await self.ledger.setup()

    async def on_goods_shopped(self, event: GoodsShopped, ctx: Context, cluster: str) -> None:
        """Record the sale once per event id, with the request context it carried."""
        request = RequestContext.from_message(ctx)  # K4: restored on the consuming side
        sale = Sale(
            event_id=ctx.event_id, order_id=event.order_id, goods_id=event.goods_id,
            user_id=event.user_id, quantity=event.quantity, amount=event.amount,
            stock_left=event.stock_left, cluster=cluster, request_id=request.request_id,
            trace_id=request.trace_id, correlation_id=ctx.correlation_id, headers=request.headers,
            received_at=time.time(),
        )
        if await self.ledger.record_sale(sale, self.settings.restock_below):
            self.counts["sales"] += 1
            self.counts[f"sales_via_{cluster}"] += 1
            ctx.log.info("sold %d of goods %d to user %d (request %s, action %s)", event.quantity,
                         event.goods_id, event.user_id, request.request_id, request.headers.get("x-action"))
        else:
            self.counts["duplicates"] += 1

    async def sales(self, goods_id: int | None = None, limit: int = 1000) -> list[Sale]:
        return await self.ledger.sales(goods_id, limit)

    async def restock_requests(self) -> dict[int, int]:
        return await self.ledger.restock_requests()

    async def stats(self) -> LedgerCounts:
        self.last_counts = await self.ledger.counts()
        return self.last_counts


def build_shop(app: App, store: EventStore, settings: ShopSettings | None = None, *,
               close_store: bool = False) -> ShopService:
    """The shop on `app`: tables and relays start with the App, relays stop
    first when it stops. `close_store`: close `store` when the App stops."""
    settings = settings or ShopSettings()
    for name in settings.clusters:
        app.cluster(name)  # a cluster the App lacks is an error now, not at the first purchase
    service = ShopService(app, store, settings)
    app.publishes(settings.topic, GoodsShopped)
    app.on_startup(service.open)
    app.on_stopping(service.stop_relays)
    if close_store:
        app.on_shutdown(store.close)
    return service


def build_store(app: App, store: EventStore, settings: ShopSettings | None = None, *,
                close_store: bool = False) -> StoreService:
    """The store service on `app`: one subscriber per cluster the shop publishes to."""
    settings = settings or ShopSettings()
    service = StoreService(app, store, settings)
    for name in settings.cluster_names():
        app.subscriber(settings.topic, group=settings.group, retry=settings.retry,
                       cluster=None if name == DEFAULT_CLUSTER else name)(_handler(service, name))
    app.on_startup(service.open)
    if close_store:
        app.on_shutdown(store.close)
    return service


def _handler(service: StoreService, cluster: str) -> Callable[[GoodsShopped, Context],
                                                               Coroutine[Any, Any, None]]:
    async def on_goods_shopped(event: GoodsShopped, ctx: Context) -> None:
        await service.on_goods_shopped(event, ctx, cluster)

    on_goods_shopped.__qualname__ = f"on_goods_shopped[{cluster}]"  # distinct subscriber names
    return on_goods_shopped


@dataclass
class ShopSystem:
    """The shop and the store service in one process, sharing brokers."""

    shop_app: App
    store_app: App
    shop: ShopService
    store: StoreService
    brokers: list[Broker]
    stores: list[EventStore]

    async def start(self) -> None:
        await self.store_app.start()
        await self.shop_app.start()

    async def stop(self) -> None:
        await self.shop_app.stop()
        await self.store_app.stop()
        for broker in self.brokers:
            await broker.close()
        for store in self.stores:
            await store.close()

    async def __aenter__(self) -> ShopSystem:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def from_urls(
    broker: str,
    store_url: str,
    *,
    clusters: Mapping[str, str] | None = None,
    ledger_url: str | None = None,
    settings: ShopSettings | None = None,
) -> ShopSystem:
    """Both services from URLs. `clusters` names more brokers (K5); `ledger_url`
    puts the store service's tables in a database of its own (default: the shop's).
    The Apps share Broker objects, so `memory://` works too."""
    clusters = dict(clusters or {})
    settings = settings or ShopSettings(clusters=tuple(clusters))
    if set(settings.clusters) != set(clusters):
        raise ValueError(f"settings.clusters {settings.clusters} differ from the clusters {tuple(clusters)}")
    main = from_url(broker)
    named = {name: from_url(url) for name, url in clusters.items()}
    shop_store = store_from_url(store_url)
    ledger_store = store_from_url(ledger_url) if ledger_url else shop_store
    shop_app = App("shop", broker=main, clusters=named, retry=settings.retry)
    store_app = App("store", broker=main, clusters=named, retry=settings.retry)
    return ShopSystem(
        shop_app, store_app,
        build_shop(shop_app, shop_store, settings), build_store(store_app, ledger_store, settings),
        [main, *named.values()], [shop_store] if ledger_store is shop_store else [shop_store, ledger_store],
    )


def shop_from_urls(broker: str, store_url: str, *, clusters: Mapping[str, str] | None = None,
                   settings: ShopSettings | None = None) -> ShopService:
    """The shop alone (a process of its own): `App("shop")` owning its brokers and
    its store. Start it with `await shop.app.start()`; serve `make_api(shop=shop)`."""
    clusters = dict(clusters or {})
    settings = settings or ShopSettings(clusters=tuple(clusters))
    app = App("shop", broker=broker, clusters=clusters, retry=settings.retry)
    return build_shop(app, store_from_url(store_url), settings, close_store=True)


def store_from_urls(broker: str, store_url: str, *, clusters: Mapping[str, str] | None = None,
                    settings: ShopSettings | None = None) -> StoreService:
    """The store service alone (a process of its own), consuming from every cluster.
    Start it with `await store.app.start()`; serve `make_api(store=store)`."""
    clusters = dict(clusters or {})
    settings = settings or ShopSettings(clusters=tuple(clusters))
    app = App("store", broker=broker, clusters=clusters, retry=settings.retry)
    return build_store(app, store_from_url(store_url), settings, close_store=True)
