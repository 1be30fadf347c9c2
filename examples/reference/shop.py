"""The shop and store services (seed 004) as a part of the demo: purchases
whose domain events leave through an outbox after the commit, through two
producer clusters, with the request context carried to the store service.

The second cluster, `north`, is a broker of its own next to the demo's: a
sibling SQLite file, or on Kafka a namespace of its own (`<namespace>north.`).
With --broker, the shop and the store run in processes of their own, driven
through their HTTP APIs (`HttpShop`, as docs/examples/shop.md says).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..shop import GOODS_TOPIC, ShopSettings, from_urls, workload
from ..shop.api import make_api
from ..shop.service import shop_from_urls, store_from_urls
from .parts import Place, Progress, Served, Stats, Summary, apps_stats
from .service_process import ServiceProcess, stop_all

NAME = "shop"
SERVICES = ("shop", "store")
PROCESSES = ("store", "shop")  # the consumer first
TOPICS = (GOODS_TOPIC,)
NORTH = "north"


def second_cluster(broker: str) -> str | None:
    """A broker apart from `broker` for the `north` cluster, where we know how to
    make one: None for other brokers (the shop then has its own cluster only)."""
    parts = urlsplit(broker)
    if parts.scheme == "sqlite":  # as text: urlunsplit would drop the empty host's slashes
        path, mark, query = broker.partition("?")
        stem, dot, ext = path.rpartition(".")
        return (f"{stem}-{NORTH}.{ext}" if dot and "/" not in ext else f"{path}-{NORTH}") + mark + query
    if parts.scheme == "kafka":
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        options["namespace"] = f"{options.get('namespace', '')}{NORTH}."
        return urlunsplit(parts._replace(query=urlencode(options)))
    return None


def _clusters(place: Place) -> dict[str, str]:
    north = second_cluster(place.broker)
    return {NORTH: north} if north else {}


def served(place: Place, service: str = "shop") -> Served:
    clusters = _clusters(place)
    if service == "shop":
        shop = shop_from_urls(place.broker, place.store, clusters=clusters)
        return Served(make_api(shop=shop), [shop.app])
    store = store_from_urls(place.broker, place.store, clusters=clusters)
    return Served(make_api(store=store), [store.app])


class _ShopPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self, place: Place) -> None:
        self.clusters = _clusters(place)
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}
        self.target: workload.LocalShop | workload.HttpShop | None = None

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        assert self.target is not None, "start first"
        self.expected = await workload.drive(self.target, rng, progress)

    async def check(self) -> list[str]:
        assert self.target is not None and self.expected is not None, "drive first"
        return await workload.check(self.target, self.expected)

    def expected_dead_letters(self) -> int | None:
        return 0  # a refused purchase publishes nothing; every published one is recorded

    async def summary(self) -> Summary:
        assert self.target is not None
        lines = workload.summary(self.target)
        if self.expected is not None:
            refused = ", ".join(f"{n} {kind}" for kind, n in sorted(self.expected.refused.items()))
            lines.append(f"shop: the workload bought {len(self.expected.orders)} times through clusters "
                         f"{', '.join(ShopSettings(clusters=tuple(self.clusters)).cluster_names())}; "
                         f"refused on purpose: {refused or 'none'}")
        return Summary(lines)


class LocalShop(_ShopPart):
    def __init__(self, place: Place) -> None:
        super().__init__(place)
        self.system = from_urls(place.broker, place.store, clusters=self.clusters)
        self.target = workload.LocalShop(self.system)

    async def start(self) -> None:
        await self.system.start()

    async def stop(self) -> None:
        await self.system.stop()
        self.stats = apps_stats([self.system.shop_app, self.system.store_app])


class RemoteShop(_ShopPart):
    def __init__(self, place: Place, spawn: Callable[[str], ServiceProcess]) -> None:
        super().__init__(place)
        self.processes = {service: spawn(service) for service in PROCESSES}

    async def start(self) -> None:
        clients = {service: await process.start() for service, process in self.processes.items()}
        settings = ShopSettings(clusters=tuple(self.clusters))
        self.target = workload.HttpShop(clients["shop"], clients["store"], clusters=settings.cluster_names(),
                                        restock_below=settings.restock_below)

    async def stop(self) -> None:
        await stop_all(reversed(self.processes.values()), self.stats)


def local(place: Place) -> LocalShop:
    return LocalShop(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteShop:
    return RemoteShop(place, spawn)
