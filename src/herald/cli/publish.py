"""`herald publish TOPIC --type TYPE`: one event from the command line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from herald.cli._common import CLI_NAME, BrokerOption, connected, run, usage

# Headers herald writes itself: a user value would be overwritten or would confuse retries.
_RESERVED_PREFIXES = ("ce_", "herald-")
_RESERVED = ("content-type", "x-retry-count")


def publish(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Topic to publish to.")],
    event_type: Annotated[
        str,
        typer.Option("--type", "-t", metavar="TYPE", help="CloudEvents type, e.g. order.placed."),
    ],
    data: Annotated[
        str | None, typer.Option("--data", "-d", metavar="JSON", help="The event's data: a JSON object.")
    ] = None,
    data_file: Annotated[
        Path | None,
        typer.Option(
            "--data-file", "-f", metavar="PATH", help="Read the JSON object from a file; '-' is stdin."
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Ordering key: same key, same order.")
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", metavar="NAME=VALUE", help="A header; repeat for more."),
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option("--delay", metavar="SECONDS", min=0, help="Deliver after this many seconds."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="CloudEvents subject (aggregate id).")
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="CloudEvents source: the publishing service's name.")
    ] = CLI_NAME,
    broker: BrokerOption = None,
) -> None:
    """Publish one event and print its id. The data is --data, --data-file, or stdin.

    Example: herald publish orders --type order.placed --key order-1 --data '{"id": 1, "total": 9.5}'
    """
    if delay is not None and not math.isfinite(delay):
        usage(f"--delay must be a finite number of seconds, got {delay}")
    payload = _payload(data, data_file)
    headers = _headers(header or [])
    if not source:
        usage("--source must not be empty")
    event_id = run(_publish(broker, source, topic, payload, event_type, key, headers, delay, subject))
    typer.echo(event_id)


async def _publish(
    broker: str | None,
    source: str,
    topic: str,
    payload: dict[str, Any],
    event_type: str,
    key: str | None,
    headers: dict[str, str],
    delay: float | None,
    subject: str | None,
) -> str:
    async with connected(broker, must_exist=False, name=source) as app:
        return await app.publish(
            topic, payload, type=event_type, key=key, headers=headers or None, delay=delay,
            subject=subject,
        )


def _payload(data: str | None, data_file: Path | None) -> dict[str, Any]:
    if data is not None and data_file is not None:
        usage("give --data or --data-file, not both")
    if data is not None:
        text, where = data, "--data"
    elif data_file is not None and str(data_file) != "-":
        try:
            text, where = data_file.read_text(encoding="utf-8"), f"--data-file {str(data_file)!r}"
        except (OSError, UnicodeDecodeError) as exc:
            usage(f"cannot read --data-file {str(data_file)!r}: {getattr(exc, 'strerror', None) or exc}")
    elif data_file is not None or not sys.stdin.isatty():
        text, where = sys.stdin.read(), "stdin"
    else:
        usage("give the event's data: --data '{...}', --data-file PATH, or a JSON object on stdin")
    if not text.strip():
        usage(f"{where} is empty: expected a JSON object")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        usage(f"{where} is not a JSON document: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(value, dict):
        usage(f"{where} must be a JSON object ({{...}}), got {_json_kind(value)}")
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _headers(pairs: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            usage(f"bad --header {pair!r}: expected NAME=VALUE")
        lowered = name.lower()
        if lowered.startswith(_RESERVED_PREFIXES) or lowered in _RESERVED:
            usage(f"header {name!r} is herald's own (ce_*, herald-*, content-type, x-retry-count)")
        headers[name] = value
    return headers
