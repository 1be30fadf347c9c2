"""`herald store ...`: look into the event store (streams, one stream or all
events in global order, counts). Read only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from herald.cli._common import (
    CliError,
    JsonOption,
    cell,
    data_value,
    echo_json,
    err_console,
    out_console,
    preview,
    run,
    usage,
)
from herald.errors import ConfigError
from herald.store.base import EventStore, StoredEvent, StoreStats, StreamInfo
from herald.store.sqlite import SqliteEventStore
from herald.store.urls import store_from_url

ENV_STORE = "HERALD_STORE"
DEFAULT_STORE = "sqlite:///herald.db"

app = typer.Typer(
    help="The event store: streams, their events, and the global order of all events.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        envvar=ENV_STORE,
        metavar="URL",
        show_default=False,
        help=f"Event store URL: sqlite:///path.db or postgresql://user:pw@host/db[?schema=name]. "
        f"Default: {DEFAULT_STORE}.",
    ),
]
LimitOption = Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, help="At most N.")]


@contextlib.asynccontextmanager
async def opened(url: str | None) -> AsyncIterator[EventStore]:
    """A connected store; a SQLite file that is not there is an error, not a new empty store."""
    url = url or DEFAULT_STORE
    try:
        store = store_from_url(url)
    except ConfigError as exc:
        raise CliError(f"{exc} (--store or {ENV_STORE})", code=2) from exc
    if isinstance(store, SqliteEventStore) and not Path(store.path).is_file():  # noqa: ASYNC240 - one stat
        raise CliError(
            f"no SQLite database at {store.path!r} ({url}): nothing was stored there yet, "
            f"or --store / {ENV_STORE} names the wrong file"
        )
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


@app.command("streams")
def streams(
    prefix: Annotated[
        str, typer.Option("--prefix", "-p", metavar="TEXT", help="Only streams whose name starts so.")
    ] = "",
    limit: LimitOption = 100,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List streams with their versions, by name.

    Example: herald store streams --prefix todo- --store sqlite:///todo.db
    """
    infos = run(_streams(store, prefix, limit))
    if as_json:
        for info in infos:
            echo_json({"stream": info.stream, "version": info.version,
                       "first_recorded": info.first_recorded.isoformat(),
                       "last_recorded": info.last_recorded.isoformat()})
        return
    if not infos:
        err_console().print("no streams" + (f" starting with {prefix!r}" if prefix else ""), markup=False)
        return
    table = Table(title="streams", title_justify="left")
    for name, justify in (("stream", "left"), ("version", "right"), ("first recorded", "left"),
                          ("last recorded", "left")):
        table.add_column(name, justify=justify, no_wrap=name == "stream")  # type: ignore[arg-type]
    for info in infos:
        table.add_row(cell(info.stream), cell(info.version), cell(_when(info.first_recorded)),
                      cell(_when(info.last_recorded)))
    out_console().print(table)


async def _streams(url: str | None, prefix: str, limit: int) -> list[StreamInfo]:
    async with opened(url) as store:
        return await store.streams(prefix, limit)


@app.command("read")
def read(
    stream: Annotated[
        str | None, typer.Argument(metavar="STREAM", help="The stream to read (or --all).")
    ] = None,
    from_: Annotated[
        int | None,
        typer.Option("--from", metavar="N", min=0,
                     help="First version to show (with --all: first position); "
                     "with --backwards the last."),
    ] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest first.")] = False,
    every: Annotated[bool, typer.Option("--all", help="All events in global order, not one stream.")] = False,
    limit: LimitOption = 100,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a stream's events, oldest first, or every event in global order.

    Example: herald store read todo-1 --from 3;  herald store read --all --from 1000
    """
    if every and stream is not None:
        usage("give a STREAM or --all, not both")
    if not every and stream is None:
        usage("missing STREAM (or --all to read every event in global order); see `herald store streams`")
    if every and backwards:
        usage("--backwards reads one stream; --all reads forwards in global order")
    if stream is not None and not stream:
        usage("STREAM must not be empty")
    events = run(_read(store, stream, from_, backwards, limit))
    if as_json:
        for event in events:
            echo_json(_as_dict(event))
        return
    if not events:
        what = "no events" if every else f"no events in stream {stream!r}"
        err_console().print(what + (f" from {from_}" if from_ is not None else ""), markup=False)
        return
    table = Table(title="all events" if every else f"stream {stream}", title_justify="left")
    for name in ("position", "stream", "version", "type", "recorded", "data"):
        table.add_column(name, justify="right" if name in ("position", "version") else "left",
                         no_wrap=name != "data")
    for event in events:
        headers = event.envelope.to_headers()
        table.add_row(cell(event.position), cell(event.stream), cell(event.version), cell(event.type),
                      cell(_when(event.recorded_at)), cell(preview(event.envelope.data, headers)))
    out_console().print(table)


async def _read(
    url: str | None, stream: str | None, start: int | None, backwards: bool, limit: int
) -> list[StoredEvent]:
    async with opened(url) as store:
        if stream is None:  # --from is a first position, read_all takes the one before
            return await store.read_all(max((start or 0) - 1, 0), limit)
        return await store.read_stream(stream, start, backwards=backwards, limit=limit)


@app.command("stats")
def stats(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Count streams and events, show the last position and the events per type.

    Example: herald store stats --store postgresql://herald:herald@127.0.0.1/herald
    """
    counts = run(_stats(store))
    if as_json:
        echo_json({"streams": counts.streams, "events": counts.events,
                   "last_position": counts.last_position, "types": counts.types})
        return
    console = out_console()
    console.print(f"streams        {counts.streams}", markup=False)
    console.print(f"events         {counts.events}", markup=False)
    console.print(f"last position  {counts.last_position}", markup=False)
    if counts.types:
        table = Table(title="events per type", title_justify="left")
        table.add_column("type", no_wrap=True)
        table.add_column("events", justify="right")
        for name, count in counts.types.items():
            table.add_row(cell(name), cell(count))
        console.print(table)


async def _stats(url: str | None) -> StoreStats:
    async with opened(url) as store:
        return await store.stats()


def _when(value: Any) -> str:
    return str(value.isoformat(timespec="milliseconds"))


def _as_dict(event: StoredEvent) -> dict[str, Any]:
    headers = event.envelope.to_headers()
    return {
        "stream": event.stream,
        "version": event.version,
        "position": event.position,
        "id": event.id,
        "type": event.type,
        "recorded_at": event.recorded_at.isoformat(),
        "metadata": dict(event.metadata),
        "attributes": {k.removeprefix("ce_"): v for k, v in headers.items()},
        **data_value(event.envelope.data, headers),
    }
