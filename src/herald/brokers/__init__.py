"""Broker adapters behind one small interface, chosen by URL."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from herald.brokers.base import Broker, Delivery, Features, LogAdmin, Message, Subscription
from herald.errors import ConfigError

__all__ = ["Broker", "Delivery", "Features", "LogAdmin", "Message", "Subscription", "from_url"]

_SCHEMES = (
    "memory://",
    "sqlite:///path.db",
    "kafka://host:9092",
    "amqp://user:pass@host:5672/",
    "redis://host:6379/0",
    "nats://host:4222",
)
# scheme -> (module under herald.brokers, pip extra). Each module has
# `from_url(url: str) -> Broker`; its client library is imported only then.
_ADAPTERS = {
    "kafka": ("kafka", "kafka"),
    "amqp": ("rabbitmq", "rabbitmq"),
    "amqps": ("rabbitmq", "rabbitmq"),
    "rabbitmq": ("rabbitmq", "rabbitmq"),
    "redis": ("redis", "redis"),
    "rediss": ("redis", "redis"),
    "nats": ("nats", "nats"),
}


def from_url(url: str) -> Broker:
    """Make a broker from a URL: `memory://`, `sqlite:///herald.db`, `sqlite:///:memory:`.

    Query parameters are the adapter's options (`sqlite:///x.db?partitions=16`).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"bad broker URL {url!r}: expected one of {', '.join(_SCHEMES)}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "memory":
        from herald.brokers.memory import MemoryBroker

        return MemoryBroker(**typed_options(options, {"partitions": int}, url))
    if scheme == "sqlite":
        from herald.brokers.sqlite import SqliteBroker

        path = url.split("://", 1)[1].split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db, sqlite:////abs.db
        if not path:
            raise ConfigError(f"bad broker URL {url!r}: give a file, e.g. sqlite:///herald.db")
        if path != ":memory:":
            path = str(Path(path))
        kinds = {"partitions": int, "lease_ttl": float, "retention": float,
                 "synchronous": str, "poll_interval": float}
        return SqliteBroker(path, **typed_options(options, kinds, url))
    if scheme in _ADAPTERS:
        module_name, extra = _ADAPTERS[scheme]
        try:
            module = importlib.import_module(f"herald.brokers.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("herald"):
                raise ConfigError(f"the {module_name} broker is not available in this herald") from exc
            raise ConfigError(
                f"the {module_name} broker needs {exc.name}: pip install 'herald[{extra}]'"
            ) from exc
        broker: Broker = module.from_url(url)
        return broker
    raise ConfigError(
        f"unknown broker scheme {scheme!r} in {url!r}: expected one of {', '.join(_SCHEMES)}"
    )


def typed_options(options: dict[str, str], kinds: dict[str, type], url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in options.items():
        kind = kinds.get(name)
        if kind is None:
            raise ConfigError(
                f"unknown option {name!r} in {url!r}; known: {', '.join(sorted(kinds)) or 'none'}"
            )
        try:
            out[name] = kind(value)
        except ValueError:
            raise ConfigError(f"option {name}={value!r} in {url!r} is not a {kind.__name__}") from None
    return out
