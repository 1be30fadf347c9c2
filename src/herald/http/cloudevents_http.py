"""The CloudEvents 1.0 HTTP binding: requests into Envelopes, Envelopes into requests.

Three content modes come in:
- binary: the attributes as `ce-*` headers (values percent-encoded), the
  data as the body, its media type as `Content-Type`;
- structured: `application/cloudevents+json`, one JSON object holding the
  attributes and `data` (or `data_base64`);
- batch: `application/cloudevents-batch+json`, a JSON array of those.

Every check raises HttpError(400) or (415) naming the event (`event 3:` in a
batch) and the attribute at fault. Push delivery goes out in binary mode.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import msgspec

from herald.errors import DecodeError
from herald.event import CONTENT_TYPE_HEADER, SPECVERSION, Envelope
from herald.http.errors import HttpError, bad_request
from herald.http.inputs import has_control

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
MAX_ATTRIBUTE = 4096  # characters of one attribute value
_NAME = re.compile(r"[a-z0-9]{1,64}")  # the spec: lower-case letters and digits
_REQUIRED = ("specversion", "id", "source", "type")
_RESERVED = frozenset({"data", "datacontenttype"})  # never extension names in binary mode
# Percent-encoded on the way out (the binding): space, '"', '%' and all but printable ASCII.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_json_decode = msgspec.json.Decoder().decode


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """`Application/JSON; charset=UTF-8` -> ("application/json", {"charset": "utf-8"})."""
    if not content_type:
        return "", {}
    media, *rest = content_type.split(";")
    params = {}
    for part in rest:
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip('"').lower()
    return media.strip().lower(), params


def is_json(media: str) -> bool:
    return media in ("", JSON) or media.endswith("+json")


def parse_request(
    content_type: str | None, headers: Iterable[tuple[str, str]], body: bytes, *, max_batch: int
) -> list[Envelope]:
    """The events of one publish request, in order. Raises HttpError."""
    media, params = media_type(content_type)
    if media in (STRUCTURED, BATCH):
        charset = params.get("charset", "utf-8")
        if charset not in ("utf-8", "utf8"):
            raise HttpError(415, "unsupported-media-type",
                            f"{media} must be UTF-8 JSON, not charset={charset}")
        document = _decode_json(body, "the request body")
        if media == STRUCTURED:
            if isinstance(document, list):
                raise bad_request(f"the body is a JSON array: send a batch as {BATCH}", "bad-event")
            return [structured_event(document, "the event")]
        if not isinstance(document, list):
            raise bad_request(f"{BATCH} needs a JSON array of events", "bad-event")
        if not document:
            raise bad_request("the batch is empty: send at least one event", "bad-event")
        if len(document) > max_batch:
            raise HttpError(413, "too-large",
                            f"the batch holds {len(document)} events; at most {max_batch} per request")
        return [structured_event(item, f"event {i}") for i, item in enumerate(document)]
    if media.startswith("application/cloudevents"):
        raise HttpError(
            415, "unsupported-media-type",
            f"unsupported CloudEvents format {media!r}: use {STRUCTURED}, {BATCH}, "
            "or binary mode (ce-* headers and the data as the body)",
        )
    return [binary_event(headers, content_type, body)]


def binary_event(headers: Iterable[tuple[str, str]], content_type: str | None, body: bytes) -> Envelope:
    attributes: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if attribute in attributes:
            raise bad_request(f"header {name} is given twice", "bad-event")
        if not _NAME.fullmatch(attribute) or attribute in _RESERVED:
            hint = "; send the data's media type as Content-Type" if attribute == "datacontenttype" else ""
            raise bad_request(
                f"header {name}: CloudEvents attribute names are lower-case letters and digits, "
                f"and not data or datacontenttype{hint}", "bad-event",
            )
        if not raw_value.isascii():
            raise bad_request(f"header {name}: percent-encode characters beyond ASCII (UTF-8)", "bad-event")
        try:
            attributes[attribute] = unquote(raw_value, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise bad_request(f"header {name}: its percent-encoding is not UTF-8", "bad-event") from None
    if not attributes:
        raise bad_request(
            "not a CloudEvent: binary mode needs the headers ce-specversion, ce-id, ce-source and "
            f"ce-type (the body is the data); or send Content-Type: {STRUCTURED}",
            "bad-event",
        )
    media, _ = media_type(content_type)
    if body and is_json(media):
        _decode_json(body, "the body (the event's data)")
    return make_envelope(attributes, body, content_type or None, "the event")


def structured_event(document: Any, where: str) -> Envelope:
    if not isinstance(document, dict):
        raise bad_request(f"{where} must be a JSON object of CloudEvents attributes", "bad-event")
    attributes: dict[str, str] = {}
    for name, value in document.items():
        if name in ("data", "data_base64") or value is None:
            continue
        if not _NAME.fullmatch(name):
            raise bad_request(
                f"{where}: {name[:80]!r} is not a CloudEvents attribute name "
                "(lower-case letters and digits)", "bad-event",
            )
        if isinstance(value, bool):
            attributes[name] = "true" if value else "false"
        elif isinstance(value, int):
            attributes[name] = str(value)
        elif isinstance(value, str):
            attributes[name] = value
        else:
            raise bad_request(f"{where}: attribute {name} must be a string, integer or boolean",
                              "bad-event")
    content_type = attributes.pop("datacontenttype", None)
    data = b""
    if document.get("data") is not None and document.get("data_base64") is not None:
        raise bad_request(f"{where} has both data and data_base64; give one", "bad-event")
    if document.get("data_base64") is not None:
        encoded = document["data_base64"]
        if not isinstance(encoded, str):
            raise bad_request(f"{where}: data_base64 must be a base64 string", "bad-event")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{where}: data_base64 is not valid base64", "bad-event") from None
    elif document.get("data") is not None:
        value = document["data"]
        if is_json(media_type(content_type)[0]):
            data = msgspec.json.encode(value)
            content_type = content_type or JSON
        elif isinstance(value, str):
            data = value.encode()
        else:
            raise bad_request(
                f"{where}: data of type {content_type} must be a string, or use data_base64", "bad-event"
            )
    return make_envelope(attributes, data, content_type, where)


def make_envelope(attributes: dict[str, str], data: bytes, content_type: str | None, where: str) -> Envelope:
    """Check the attributes and build the Envelope herald publishes."""
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise bad_request(
            f"{where} is not a CloudEvent: attribute(s) {', '.join(missing)} missing or empty",
            "bad-event",
        )
    if attributes["specversion"] != SPECVERSION:
        raise bad_request(
            f"{where}: specversion {attributes['specversion'][:20]!r} is not supported; use {SPECVERSION}",
            "bad-event",
        )
    for name, value in attributes.items():
        if len(value) > MAX_ATTRIBUTE:
            raise bad_request(f"{where}: attribute {name} is longer than {MAX_ATTRIBUTE} characters",
                              "bad-event")
        if has_control(value):
            raise bad_request(f"{where}: attribute {name} holds control characters", "bad-event")
    if content_type is not None and (has_control(content_type) or len(content_type) > 256):
        raise bad_request(f"{where}: bad datacontenttype", "bad-event")
    if "time" in attributes:
        _check_time(attributes["time"], where)
    headers = {"ce_" + name: value for name, value in attributes.items()}
    if content_type is not None:
        headers[CONTENT_TYPE_HEADER] = content_type
    try:
        return Envelope.from_headers(headers, data)
    except DecodeError as exc:
        raise bad_request(f"{where}: {exc.reason}", "bad-event") from None


def _check_time(value: str, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise bad_request(
            f"{where}: time {value[:40]!r} is not an RFC 3339 timestamp (e.g. 2024-05-01T12:00:00Z)",
            "bad-event",
        )


def _decode_json(body: bytes, what: str) -> Any:
    if not body:
        raise bad_request(f"{what} is empty", "bad-json")
    try:
        return _json_decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise bad_request(f"{what} is not valid JSON: {str(exc)[:200]}", "bad-json") from None


# -- out ----------------------------------------------------------------------
def binary_headers(envelope: Envelope) -> dict[str, str]:
    """The envelope as HTTP binary-mode headers, values percent-encoded."""
    out = {}
    for name, value in envelope.to_headers().items():
        if name == CONTENT_TYPE_HEADER:
            out["content-type"] = value
        elif name.startswith("ce_"):
            out["ce-" + name[3:]] = quote(value, safe=_SAFE)
    return out


def data_fields(data: bytes, content_type: str | None) -> dict[str, Any]:
    """`{"data": value}` for JSON data, else `{"data_base64": "..."}`."""
    if is_json(media_type(content_type)[0]):
        if not data:
            return {"data": None}
        try:
            return {"data": _json_decode(data)}
        except (msgspec.DecodeError, RecursionError):
            pass
    return {"data_base64": base64.b64encode(data).decode()}


def structured(envelope: Envelope) -> dict[str, Any]:
    """The envelope in the CloudEvents JSON format."""
    out: dict[str, Any] = {"specversion": envelope.specversion, "id": envelope.id,
                           "source": envelope.source, "type": envelope.type}
    optional: Mapping[str, Any] = {
        "time": envelope.time, "subject": envelope.subject,
        "datacontenttype": envelope.datacontenttype, "dataversion": envelope.dataversion,
        "correlationid": envelope.correlationid, "causationid": envelope.causationid,
        "traceparent": envelope.traceparent, "aggregatetype": envelope.aggregatetype,
    }
    out.update({name: value for name, value in optional.items() if value is not None})
    for name, value in envelope.extensions.items():
        out.setdefault(name, value)
    out.update(data_fields(envelope.data, envelope.datacontenttype))
    return out
