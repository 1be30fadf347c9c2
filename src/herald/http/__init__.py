"""herald over HTTP: the gateway (publish, topics, groups, dead letters,
streams) and push delivery of a topic to an HTTP endpoint.

Needs `pip install 'herald[http]'` (Starlette, uvicorn, httpx), except
`verify_signature`, which a receiver can use with the standard library only.
Nothing else in herald imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herald.http.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_problem, verify_signature

if TYPE_CHECKING:
    from herald.http.gateway import create_gateway
    from herald.http.push import PushFailed, PushSubscription, push_subscription

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "PushFailed",
    "PushSubscription",
    "create_gateway",
    "push_subscription",
    "signature_problem",
    "verify_signature",
]
_LAZY = {
    "create_gateway": "herald.http.gateway",
    "PushFailed": "herald.http.push",
    "PushSubscription": "herald.http.push",
    "push_subscription": "herald.http.push",
}


def __getattr__(name: str) -> Any:
    """The gateway and push delivery load Starlette and httpx only when asked for."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'herald.http' has no attribute {name!r}")
    import importlib

    from herald.errors import ConfigError

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("herald"):
            raise ConfigError(f"herald.http.{name} needs {exc.name}: pip install 'herald[http]'") from exc
        raise
    return getattr(module, name)
