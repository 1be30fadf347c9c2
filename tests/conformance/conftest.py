"""The broker conformance suite: one set of cases, run against every adapter.

Each adapter is described by a `BrokerSpec`: how to make a broker URL, and
what it can do. A case that needs a power the adapter lacks (crash
recovery on `memory`) is not collected for it, rather than skipped:
`@pytest.mark.needs("crash_safe")`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from herald import App, Broker, from_url
from herald.brokers.base import Features


@dataclass(frozen=True)
class BrokerSpec:
    name: str
    url: Callable[[Path], str]
    # Restart the broker's service in the middle of a run; None: no service.
    restart: Callable[[], Awaitable[None]] | None = None
    # Seconds a group of new members needs to share the partitions.
    settle: float = 1.2

    @property
    def features(self) -> Features:
        return from_url(self.url(Path("/tmp"))).features

    def can(self, power: str) -> bool:
        if power == "service_restart":
            return self.restart is not None
        return bool(getattr(self.features, power))


def _discover() -> list[BrokerSpec]:
    """The embedded brokers, then one `specs/<broker>.py` (a `SPEC`) per adapter."""
    specs = [
        BrokerSpec("memory", lambda tmp: "memory://"),
        BrokerSpec("sqlite", lambda tmp: f"sqlite:///{tmp}/herald.db?lease_ttl=2"),
    ]
    for path in sorted((Path(__file__).parent / "specs").glob("[!_]*.py")):
        module = importlib.import_module(f"{__package__}.specs.{path.stem}")
        specs.append(module.SPEC)
    return specs


SPECS = _discover()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*powers): broker features the case needs")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "spec" not in metafunc.fixturenames:
        return
    powers = [p for mark in metafunc.definition.iter_markers("needs") for p in mark.args]
    specs = [s for s in SPECS if all(s.can(p) for p in powers)]
    metafunc.parametrize("spec", specs, ids=[s.name for s in specs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A case no broker can run (no spec has the power) is not collected at all,
    rather than reported as skipped for an empty parameter set."""
    def runnable(item: pytest.Item) -> bool:
        return not any(
            "empty parameter set" in str(mark.kwargs.get("reason", ""))
            for mark in item.iter_markers("skip")
        )

    items[:] = [item for item in items if runnable(item)]


class Brokers:
    """Makes Apps on the broker under test. On `memory` every App shares one
    broker object (its state lives in it); elsewhere each App connects anew,
    as separate processes would."""

    def __init__(self, spec: BrokerSpec, tmp_path: Path) -> None:
        self.spec = spec
        self.url = spec.url(tmp_path)
        self._shared: Broker | None = from_url(self.url) if spec.name == "memory" else None
        self.apps: list[App] = []

    def app(self, name: str = "svc", **options: object) -> App:
        app = App(name, broker=self._shared or self.url, **options)  # type: ignore[arg-type]
        self.apps.append(app)
        return app

    async def close(self) -> None:
        for app in self.apps:
            await app.stop(timeout=5)
        if self._shared is not None:
            await self._shared.close()


@pytest.fixture
async def brokers(spec: BrokerSpec, tmp_path: Path) -> AsyncIterator[Brokers]:
    made = Brokers(spec, tmp_path)
    try:
        yield made
    finally:
        await made.close()
