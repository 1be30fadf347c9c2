"""Codecs turn payloads into bytes and back, chosen by `datacontenttype`.

JSON (msgspec: the fastest validating JSON codec we measured, see
docs/decisions.md) is the default; Protobuf messages use the Protobuf codec.
`PayloadDecoder` decodes the data of an envelope into what a handler asked for.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from herald.errors import ConfigError, DecodeError, UnknownEventType
from herald.event import Envelope, registry, type_name_of, version_of
from herald.upcasting import Upcasters, upcasters

JSON = "application/json"
PROTOBUF = "application/protobuf"
OCTET_STREAM = "application/octet-stream"
_PROTOBUF_ALIASES = frozenset({PROTOBUF, "application/x-protobuf", "application/vnd.google.protobuf"})


class Codec(Protocol):
    content_type: str

    def encode(self, payload: Any) -> bytes: ...

    def decode(self, data: bytes, target: type[Any] | None) -> Any: ...


class JsonCodec:
    """JSON through msgspec; decoding into a class validates it."""

    content_type = JSON

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

    def encode(self, payload: Any) -> bytes:
        try:
            return self._encoder.encode(payload)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ConfigError(f"cannot encode {type(payload).__name__} as JSON: {exc}") from exc

    def decode(self, data: bytes, target: type[Any] | None) -> Any:
        decoder = self._decoders.get(target)
        if decoder is None:
            decoder = msgspec.json.Decoder(target) if target is not None else msgspec.json.Decoder()
            self._decoders[target] = decoder
        try:
            return decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"payload does not match {_name(target)}: {exc}", kind="schema") from exc
        except msgspec.DecodeError as exc:
            raise DecodeError(f"payload is not valid JSON: {exc}", kind="decode") from exc
        except RecursionError as exc:  # msgspec's answer to `[[[[...` nested too deep
            raise DecodeError(f"payload is not valid JSON: {exc}", kind="decode") from exc

    def convert(self, payload: Any, target: type[Any]) -> Any:
        try:
            return msgspec.convert(payload, target)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"payload does not match {_name(target)}: {exc}", kind="schema") from exc


class ProtobufCodec:
    """Protobuf messages (seed 003's job events); the target is the message class."""

    content_type = PROTOBUF

    def encode(self, payload: Any) -> bytes:
        serialize = getattr(payload, "SerializeToString", None)
        if serialize is None:
            raise ConfigError(f"{type(payload).__name__} is not a Protobuf message")
        return bytes(serialize())

    def decode(self, data: bytes, target: type[Any] | None) -> Any:
        if target is None or not hasattr(target, "FromString"):
            raise DecodeError("a Protobuf payload needs a Protobuf message class to decode into",
                              kind="schema")
        try:
            return target.FromString(data)
        except Exception as exc:  # protobuf raises DecodeError of its own, and others
            raise DecodeError(f"payload is not a valid {_name(target)}: {exc}",
                              kind="decode") from exc


json_codec = JsonCodec()
protobuf_codec = ProtobufCodec()


def is_protobuf(obj: Any) -> bool:
    return hasattr(obj, "SerializeToString") and hasattr(obj, "DESCRIPTOR")


def media_type(content_type: str | None) -> str | None:
    """`Application/JSON; charset=utf-8` -> `application/json`: what picks the codec."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media: str | None) -> bool:
    return media is None or media == JSON or media.endswith("+json")


def encode_payload(payload: Any, content_type: str | None = None) -> tuple[bytes, str]:
    """Encode a payload; returns (bytes, datacontenttype)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), content_type or OCTET_STREAM
    media = media_type(content_type)
    if is_protobuf(payload) or media in _PROTOBUF_ALIASES:
        return protobuf_codec.encode(payload), content_type or PROTOBUF
    if not _is_json(media):
        raise ConfigError(f"no codec for content type {content_type!r}; use {JSON!r} or {PROTOBUF!r}")
    return json_codec.encode(payload), content_type or JSON


def _name(target: Any) -> str:
    if target is None:
        return "JSON"
    return getattr(target, "__name__", None) or str(target)


# What a handler asks for, read off its annotation.
RAW_KINDS = {bytes: "bytes", Envelope: "envelope"}


class PayloadDecoder:
    """Decodes an envelope's data into what one handler wants.

    `targets` are event classes (Event subclasses or Protobuf messages); with
    none, the handler gets the decoded JSON value (`dict`, `Any`), the raw
    `bytes`, or the `Envelope` itself.
    """

    def __init__(
        self,
        targets: Iterable[type[Any]] = (),
        *,
        raw: str | None = None,
        upcast: Upcasters = upcasters,
    ) -> None:
        self.targets = {type_name_of(cls): cls for cls in targets}
        for name, cls in self.targets.items():
            if name not in registry:  # Protobuf classes: known here, so others skip them
                registry.register(cls, name)
        self.raw = raw
        self._upcasters = upcast
        # type -> (decode, version) of Event targets: the common case in one step
        self._fast: dict[str, tuple[Callable[[bytes], Any], int]] = {
            name: (msgspec.json.Decoder(cls).decode, version_of(cls))
            for name, cls in self.targets.items()
            if isinstance(cls, type) and issubclass(cls, msgspec.Struct)
        }

    @classmethod
    def for_annotation(cls, annotation: Any, types: Iterable[type[Any]] | None = None) -> PayloadDecoder:
        """Build from a handler's annotation (`T`, `A | B`, `list[T]`, `dict`, `bytes`...)."""
        if types:
            return cls(types)
        origin = typing.get_origin(annotation)
        if origin is list:  # batch handlers: the element type decides
            (annotation,) = typing.get_args(annotation) or (Any,)
            origin = typing.get_origin(annotation)
        if origin in (typing.Union, types_union()):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            for member in members:
                if not _is_event_class(member):
                    raise ConfigError(
                        f"cannot decode events into {annotation!r}: {member!r} is not an Event "
                        "subclass or a Protobuf message; a union may hold only those"
                    )
            return cls(members)
        if annotation in RAW_KINDS:
            return cls(raw=RAW_KINDS[annotation])
        if annotation in (Any, dict, object, None) or annotation is typing.Any or origin is dict:
            return cls(raw="json")
        if _is_event_class(annotation):
            return cls([annotation])
        raise ConfigError(
            f"cannot decode events into {annotation!r}: annotate the handler's event parameter "
            "with an Event subclass, a union of them, a Protobuf message, dict, bytes or Envelope"
        )

    def accepts(self, event_type: str) -> bool:
        """False for a known event type this handler did not ask for (it is skipped)."""
        if self.raw is not None or not self.targets:
            return True
        if event_type in self.targets:
            return True
        return event_type not in registry  # unknown everywhere: decode() dead-letters it

    def decode(self, envelope: Envelope) -> Any:
        fast = self._fast.get(envelope.type)
        if (fast is not None and envelope.datacontenttype == JSON
                and (envelope.dataversion or 1) == fast[1]):
            try:
                return fast[0](envelope.data)
            except (msgspec.DecodeError, RecursionError):
                pass  # the full path below says what is wrong
        if self.raw == "envelope":
            return envelope
        if self.raw == "bytes":
            return envelope.data
        content_type = envelope.datacontenttype or JSON
        media = media_type(content_type)
        if self.raw == "json":
            if not _is_json(media):
                raise DecodeError(f"handler wants JSON, event is {content_type}", kind="schema")
            return json_codec.decode(envelope.data, None)
        target = self.targets.get(envelope.type)
        if target is None:
            raise UnknownEventType(
                f"unknown event type {envelope.type!r}; this handler takes "
                f"{', '.join(sorted(self.targets)) or 'no typed events'}"
            )
        if media in _PROTOBUF_ALIASES:
            return protobuf_codec.decode(envelope.data, target)
        if not _is_json(media):
            raise DecodeError(f"no codec for content type {content_type!r}", kind="decode")
        if is_protobuf(target):  # msgspec would say "Expected `UserSync`, got `dict`"
            raise DecodeError(
                f"{envelope.type} is a Protobuf message, but the event came as {content_type}",
                kind="schema",
            )
        current = version_of(target)
        version = envelope.dataversion or 1
        if version == current:
            return json_codec.decode(envelope.data, target)
        payload = json_codec.decode(envelope.data, None)
        payload = self._upcasters.upcast(envelope.type, payload, version, current)
        return json_codec.convert(payload, target)


def types_union() -> Any:
    return types.UnionType


def _is_event_class(annotation: Any) -> bool:
    return isinstance(annotation, type) and (
        hasattr(annotation, "__event_type__") or hasattr(annotation, "FromString")
    )
