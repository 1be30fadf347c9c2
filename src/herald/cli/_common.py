"""What every command shares: the broker option, errors, output helpers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from herald.app import App
from herald.brokers import Broker
from herald.brokers.memory import MemoryBroker
from herald.brokers.sqlite import SqliteBroker
from herald.event import CONTENT_TYPE_HEADER

T = TypeVar("T")

ENV_BROKER = "HERALD_BROKER"
DEFAULT_BROKER = "sqlite:///herald.db"
CLI_NAME = "herald-cli"

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        "-b",
        envvar=ENV_BROKER,
        metavar="URL",
        show_default=False,
        help=f"Broker URL, e.g. sqlite:///path.db. Default: {DEFAULT_BROKER}.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, one object per line.")]


class CliError(Exception):
    """A problem the user can fix: printed as one `error:` line, no traceback.

    `code` is 2 for a usage problem (bad argument), 1 for a runtime one.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def usage(message: str) -> NoReturn:
    raise CliError(message, code=2)


def broker_url(url: str | None) -> str:
    return url or DEFAULT_BROKER


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop."""
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def connected(
    url: str | None, *, must_exist: bool = True, name: str = CLI_NAME
) -> AsyncIterator[App]:
    """A started App with no subscribers, to publish or look into the broker.

    With `must_exist`, a SQLite file that is not there is an error instead of
    a new empty database (a typo in --broker would otherwise look like an
    empty broker).
    """
    url = broker_url(url)
    app = App(name, broker=url)
    broker = app.broker
    if must_exist:
        _check_exists(broker, url)
    if isinstance(broker, MemoryBroker):
        err_console().print(
            "warning: a memory:// broker lives inside one process; this command sees an empty one",
            markup=False, highlight=False,
        )
    async with app:
        yield app


def _check_exists(broker: Broker, url: str) -> None:
    if isinstance(broker, SqliteBroker) and broker.path != ":memory:" and not Path(broker.path).is_file():
        raise CliError(
            f"no SQLite database at {broker.path!r} ({url}): nothing was published there yet, "
            f"or --broker / {ENV_BROKER} names the wrong file"
        )


def out_console() -> Console:
    """Standard output; piped, it is as wide as a wide terminal, not 80 columns."""
    wide = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
    return Console(highlight=False, width=wide)


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def cell(value: object) -> Text:
    """A table cell shown as written (never read as rich markup)."""
    return Text("-" if value is None else str(value))


def echo_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def data_value(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """A record's payload for JSON output: `data` when it is JSON, else `data_base64`."""
    content_type = headers.get(CONTENT_TYPE_HEADER, "application/json")
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return {"data": json.loads(body)} if body else {"data": None}
        except ValueError:
            pass
    return {"data_base64": base64.b64encode(body).decode()}


def preview(body: bytes, headers: Mapping[str, str], width: int = 60) -> str:
    """A short one-line view of a payload."""
    content_type = headers.get(CONTENT_TYPE_HEADER, "application/json")
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            text = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            text = body.decode("utf-8", "replace")
    else:
        return f"<{len(body)} bytes {content_type}>"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def debug() -> bool:
    """HERALD_DEBUG=1 shows tracebacks instead of one-line errors."""
    return os.environ.get("HERALD_DEBUG", "") not in ("", "0", "false", "no")


def print_error(message: str) -> None:
    line = " ".join(str(message).split())
    print(f"error: {line}", file=sys.stderr, flush=True)
