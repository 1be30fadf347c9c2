"""herald's exceptions: one small hierarchy, each message says what to do."""

from __future__ import annotations


class HeraldError(Exception):
    """Base class of every error herald raises on purpose."""


class ConfigError(HeraldError, ValueError):
    """A setting, URL or argument is wrong; the message names it and the fix."""


class DecodeError(HeraldError):
    """Bytes could not be turned into an event: bad envelope, unknown type or bad schema.

    Such a message is poison: it is never retried, it goes straight to dead letters.
    """

    def __init__(self, reason: str, *, kind: str = "decode") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class UnknownEventType(DecodeError):
    """An event's `type` is not one this subscriber or this process knows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, kind="unknown-type")


class BrokerError(HeraldError):
    """The broker failed or cannot be reached."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """The broker cannot be reached at the given address."""


class UnknownCluster(HeraldError, KeyError):
    """`publish(cluster=...)` named a cluster the App was not given."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class NotRunning(HeraldError, RuntimeError):
    """An operation needs a started App or a connected broker."""


class DeadLetterNotFound(HeraldError, LookupError):
    """No dead letter has the given id."""

    def __str__(self) -> str:
        return str(self.args[0])


class Reject(HeraldError):
    """Raised by a handler: this event can never succeed (bad data, an unknown
    kind). It goes straight to the dead letters with `reason`, without retries.

        raise Reject("unknown-kind", f"no handler for kind {kind!r}")
    """

    def __init__(self, reason: str, message: str = "") -> None:
        if not reason or not isinstance(reason, str):
            raise ConfigError("Reject needs a reason, a short word like 'unknown-kind'")
        super().__init__(message or reason)
        self.reason = reason
