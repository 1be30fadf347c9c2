"""Upcasters turn the payload of event version N into version N+1 on read.

Handlers then see only the current schema, instead of a switch on the
version in every handler. An upcaster works on the decoded JSON object
(a dict), before validation into the event class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from herald.errors import ConfigError, DecodeError

UpcastFn = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """A chain of steps per event type: `(type, N) -> fn` makes version N+1."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], UpcastFn] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[UpcastFn], UpcastFn]:
        """Decorator: `@upcaster("todo.created", from_version=1)` turns v1 into v2."""
        if from_version < 1:
            raise ConfigError(f"from_version must be >= 1, got {from_version}")

        def add(fn: UpcastFn) -> UpcastFn:
            self._steps[(event_type, from_version)] = fn
            return fn

        return add

    def upcast(self, event_type: str, payload: Any, version: int, target: int) -> Any:
        """Apply the steps version -> target; a missing step is a DecodeError."""
        if version > target:
            raise DecodeError(
                f"{event_type} version {version} is newer than this code knows ({target}); "
                "deploy the newer event class before consuming it",
                kind="version",
            )
        for step in range(version, target):
            fn = self._steps.get((event_type, step))
            if fn is None:
                raise DecodeError(
                    f"no upcaster for {event_type} from version {step} to {step + 1}; "
                    f"register one with @upcaster({event_type!r}, from_version={step})",
                    kind="version",
                )
            if not isinstance(payload, dict):
                raise DecodeError(f"{event_type} v{step} payload is not an object", kind="schema")
            try:
                payload = fn(payload)
            except DecodeError:
                raise
            except Exception as exc:  # the same payload fails the same way: poison, not retry
                raise DecodeError(
                    f"upcaster for {event_type} from version {step} failed: "
                    f"{type(exc).__name__}: {exc}",
                    kind="upcast",
                ) from exc
        return payload


upcasters = Upcasters()
upcaster = upcasters.register
