"""Push delivery: a subscription that POSTs each event of a topic to an HTTP
endpoint (freedom's consumer proxy, Dapr's HTTP subscriptions).

Each event goes out in CloudEvents binary mode: `ce-*` headers, the data as
the body, plus `x-retry-count` (the retry stage, freedom's header),
`x-herald-attempt` (the in-process attempt), `x-message-key`,
`x-herald-topic`, and an HMAC-SHA256 signature (`herald.http.signing`).

The answer decides:
- 2xx with no body, a body that is not JSON, or `{"status": "SUCCESS"}`:
  done (acknowledged);
- 2xx with `{"status": "DROP"}`: acknowledged, counted as dropped, logged
  (the receiver chose to drop it; herald drops nothing on its own);
- 2xx with `{"status": "RETRY"}`, or any other status word: retried;
- any other code, a timeout, a refused connection: retried.
"Retried" means the subscriber's RetryPolicy: attempts in place, retry
stages, then the dead-letter topic with the reason. Unlike Dapr, a 404 is
not a drop: it is retried and ends in the dead letters, where it can be
replayed once the endpoint is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit

import httpx
import msgspec

from herald.app import App
from herald.context import Context
from herald.errors import ConfigError, HeraldError
from herald.event import Envelope
from herald.http.cloudevents_http import binary_headers
from herald.http.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, Secret, sign
from herald.retry import RetryPolicy

log = logging.getLogger("herald.push")
MAX_ANSWER = 64 * 1024  # bytes of an answer read for its status
_decode_answer = msgspec.json.Decoder().decode
_OURS = ("ce-", "x-herald-", "content-", "x-retry-count", "x-message-key", "host", "connection",
         "transfer-encoding", "te", "upgrade", "trailer", "keep-alive", "proxy-")


class PushFailed(HeraldError):
    """The endpoint did not take the event (raised in the handler: retried, then
    dead-lettered with this message)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PushSubscription:
    """One topic pushed to one URL. `stats` counts delivered, dropped, retry
    (the receiver asked) and failed (code, timeout, connection) answers.
    Safe from several tasks of one event loop."""

    def __init__(
        self,
        topic: str,
        url: str,
        group: str,
        secret: bytes,
        timeout: float,
        headers: Mapping[str, str],
        forward_headers: Sequence[str],
        client: httpx.AsyncClient | None,
        concurrency: int,
    ) -> None:
        self.topic = topic
        self.url = url
        self.group = group
        self.timeout = timeout
        self.stats = {"delivered": 0, "dropped": 0, "retry": 0, "failed": 0}
        self._secret = secret
        self._headers = dict(headers)
        self._forward = [h.lower() for h in forward_headers]
        self._client = client
        self._owns_client = client is None
        self._concurrency = concurrency

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made in the running loop; kept: connections are reused
            size = max(self._concurrency, 1)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                follow_redirects=False,
            )
        return self._client

    async def close(self) -> None:
        """Close the HTTP client this subscription made. Idempotent."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def request_headers(self, envelope: Envelope, ctx: Context) -> dict[str, str]:
        headers = dict(self._headers)
        raw = ctx.headers
        for name in self._forward:
            value = raw.get(name)
            if value is not None and value.isprintable() and value.isascii():
                headers[name] = value
        headers.update(binary_headers(envelope))
        headers["x-retry-count"] = str(ctx.retry_count)
        headers["x-herald-attempt"] = str(ctx.attempt)
        headers["x-herald-topic"] = ctx.topic
        if ctx.key is not None:
            headers["x-message-key"] = quote(ctx.key, safe="")
        if envelope.traceparent is not None and envelope.traceparent.isascii():
            headers["traceparent"] = envelope.traceparent
        return sign(self._secret, headers, envelope.data)

    async def deliver(self, envelope: Envelope, ctx: Context) -> None:
        """POST one event; returns when it was taken (or dropped), raises PushFailed else."""
        headers = self.request_headers(envelope, ctx)
        try:
            async with asyncio.timeout(self.timeout):  # a total, beside httpx's per-phase ones
                status, answer = await self._post(headers, envelope.data)
        except (TimeoutError, httpx.TimeoutException):
            self.stats["failed"] += 1
            raise PushFailed(f"{self.url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            self.stats["failed"] += 1
            raise PushFailed(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            self.stats["failed"] += 1
            snippet = answer[:200].decode("utf-8", "replace")
            raise PushFailed(f"{self.url} answered {status}: {snippet}", status)
        verdict = _status_of(answer)
        if verdict in (None, "SUCCESS"):
            self.stats["delivered"] += 1
        elif verdict == "DROP":
            self.stats["dropped"] += 1
            log.warning("push: %s dropped event %s (%s) of %s, as the receiver asked",
                        self.url, envelope.id, envelope.type, self.topic)
        else:
            self.stats["retry"] += 1
            raise PushFailed(f"{self.url} answered status {verdict[:40]!r}: retry", status)

    async def _post(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        async with self._http().stream("POST", self.url, content=body, headers=headers) as response:
            answer = b""
            async for chunk in response.aiter_bytes():
                answer += chunk
                if len(answer) > MAX_ANSWER:
                    break
            return response.status_code, answer


def _status_of(answer: bytes) -> str | None:
    """Dapr's convention: `{"status": "SUCCESS" | "RETRY" | "DROP"}`; anything
    not a JSON object with a status is a plain success."""
    if not answer.strip():
        return None
    try:
        value = _decode_answer(answer)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or value.get("status") in (None, ""):
        return None
    status = value["status"]
    return status.upper() if isinstance(status, str) else repr(status)


def push_subscription(
    app: App,
    topic: str,
    url: str,
    *,
    secret: Secret,
    group: str | None = None,
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
    concurrency: int = 1,
    headers: Mapping[str, str] | None = None,
    forward_headers: Sequence[str] = (),
    client: httpx.AsyncClient | None = None,
    cluster: str | None = None,
) -> PushSubscription:
    """Deliver `topic` to `url` as signed CloudEvents; register it on `app` as an
    ordinary subscriber (group default: `push-<topic>`), so retries, retry stages
    and dead letters work as for any handler. Call before `app.start()`.

    `secret` signs every request (the receiver checks it with
    `herald.http.verify_signature`). `timeout`: seconds per request.
    `concurrency`: requests in flight, keeping per-key order. `headers`: fixed
    headers to add (an API key of the receiver, say). `forward_headers`: names
    of the publisher's own headers to pass on (K4). `client`: your own
    httpx.AsyncClient (you close it); by default one is made and closed with
    the App.
    """
    problems = []
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"url must be an absolute http:// or https:// URL, got {url!r}")
    if not isinstance(secret, str | bytes) or not secret:
        problems.append("secret must be a non-empty string or bytes: every request is signed")
    if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
    for name, value in (headers or {}).items():
        if name.lower().startswith(_OURS) or name.lower() in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
            problems.append(f"header {name!r} is set by push delivery itself")
        elif not (name.isascii() and name.isprintable() and value.isascii() and value.isprintable()):
            problems.append(f"header {name!r}: names and values must be printable ASCII")
    if problems:
        raise ConfigError("push_subscription: " + "; ".join(problems))
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    subscription = PushSubscription(
        topic, url, group or f"push-{topic}", key, float(timeout), headers or {}, forward_headers,
        client, concurrency,
    )

    async def push(envelope: Envelope, ctx: Context) -> None:
        await subscription.deliver(envelope, ctx)

    push.__qualname__ = f"push({url})"
    app.subscriber(topic, group=subscription.group, retry=retry, concurrency=concurrency,
                   cluster=cluster)(push)
    app.on_shutdown(subscription.close)
    return subscription
