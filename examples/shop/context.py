"""The request context that travels with a message (K4).

freedom's `msg.SetRuntime(runtime)` copied the HTTP request's context onto
the message, and the consumer read it back with `Ctx().GetHeader(...)`.
Here a `RequestContext` holds a request id, a W3C trace (`traceparent`)
and the request headers the shop chose to carry. On the way out it becomes
message headers (`x-request-id` and the chosen ones) and the envelope's
`traceparent` and `correlationid`; on the consuming side
`RequestContext.from_message(ctx)` rebuilds it from `ctx.headers` and
`ctx.envelope`.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from herald import Context

REQUEST_ID = "x-request-id"
TRACEPARENT = "traceparent"
ACTION = "x-action"
# What the shop carries by default, besides the request id (lower-case names).
CARRIED_HEADERS = ("x-user-agent", "x-client", "accept-language")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces


class BadRequestContext(ValueError):
    """A request id the shop will not carry (empty, too long, not printable ASCII)."""


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asked, in which trace, with which chosen headers. Immutable."""

    request_id: str
    traceparent: str
    headers: dict[str, str] = field(default_factory=dict)  # chosen headers, lower-case names

    @property
    def trace_id(self) -> str:
        """The 32 hex digits of the trace, "" when there is no trace."""
        match = _TRACEPARENT.match(self.traceparent)
        return match.group(1) if match else ""

    @classmethod
    def new(cls, headers: Mapping[str, str] | None = None) -> RequestContext:
        """A fresh context (a new request id and trace) for calls outside HTTP."""
        return cls(uuid.uuid4().hex, new_traceparent(), dict(headers or {}))

    @classmethod
    def from_request_headers(
        cls, headers: Mapping[str, str], carried: Iterable[str] = CARRIED_HEADERS
    ) -> RequestContext:
        """From an HTTP request's headers: `x-request-id` (made up when absent;
        BadRequestContext when malformed), `traceparent` (a new trace when absent
        or malformed, as W3C Trace Context asks) and the `carried` headers."""
        lowered = {name.lower(): value for name, value in headers.items()}
        request_id = lowered.get(REQUEST_ID)
        if request_id is None:
            request_id = uuid.uuid4().hex
        elif not _REQUEST_ID.match(request_id):
            raise BadRequestContext(
                f"{REQUEST_ID} must be 1 to 128 printable ASCII characters without spaces, got {request_id!r}"
            )
        traceparent = lowered.get(TRACEPARENT, "")
        if not _TRACEPARENT.match(traceparent) or set(traceparent[3:35]) == {"0"}:
            traceparent = new_traceparent()
        chosen = {name: lowered[name] for name in (n.lower() for n in carried) if name in lowered}
        return cls(request_id, traceparent, chosen)

    def message_headers(self, action: str) -> dict[str, str]:
        """The headers a message carries: the chosen ones, the request id, and
        `x-action` (the seed's `SetHeaders({"x-action": "购买"})`)."""
        return {**self.headers, REQUEST_ID: self.request_id, ACTION: action}

    @classmethod
    def from_message(cls, ctx: Context) -> RequestContext:
        """The context as the consumer sees it: restored from the message."""
        carried = {k: v for k, v in ctx.headers.items() if k != REQUEST_ID}
        request_id = ctx.headers.get(REQUEST_ID) or ctx.envelope.correlationid or ctx.envelope.id
        return cls(request_id, ctx.envelope.traceparent or "", carried)
