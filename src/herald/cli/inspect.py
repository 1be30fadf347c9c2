"""`herald tail TOPIC` and `herald topics`: look into stored records without consuming them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections import deque
from typing import Annotated

import typer
from rich.table import Table

from herald.brokers.base import Delivery, LogAdmin, TopicInfo
from herald.cli._common import (
    BrokerOption,
    CliError,
    JsonOption,
    cell,
    connected,
    data_value,
    echo_json,
    err_console,
    out_console,
    preview,
    run,
)

_PAGE = 500


def tail(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Topic whose records to print.")],
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", min=0, help="How many of the last records.")
    ] = 10,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing new records until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", metavar="SECONDS", min=0.01, help="How often --follow looks."),
    ] = 0.5,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Print the last records of a topic: offset, key, type, event id, data.

    Records are read, not consumed: no group's position moves.

    Example: herald tail orders -n 20 --follow
    """
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to end --follow
        run(_tail(broker, topic, lines, follow, interval, as_json))


async def _tail(
    broker: str | None, topic: str, lines: int, follow: bool, interval: float, as_json: bool
) -> None:
    async with connected(broker) as app:
        admin = app.admin()
        if not follow:
            known = [t.name for t in await admin.topics()]
            if topic not in known:
                listed = ", ".join(known[:20]) if known else "none yet"
                raise CliError(f"no topic {topic!r}; topics: {listed}")
        last: deque[Delivery] = deque(maxlen=lines)
        after = 0
        while True:  # the admin API reads forward only: keep the last N
            page = await admin.read_topic(topic, after=after, limit=_PAGE)
            last.extend(page)
            if page:
                after = page[-1].offset
            if len(page) < _PAGE:
                break
        for record in last:
            _print(record, as_json)
        if follow:
            stop = _stop_on_signals()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                after = await _print_new(admin, topic, after, as_json)


def _stop_on_signals() -> asyncio.Event:
    """Ctrl-C or SIGTERM ends --follow quietly, with exit code 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _print_new(admin: LogAdmin, topic: str, after: int, as_json: bool) -> int:
    while True:
        page = await admin.read_topic(topic, after=after, limit=_PAGE)
        for record in page:
            _print(record, as_json)
        if page:
            after = page[-1].offset
        if len(page) < _PAGE:
            return after


def _print(record: Delivery, as_json: bool) -> None:
    hd = record.headers
    if as_json:
        echo_json({
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key,
            "timestamp": record.timestamp,
            "id": hd.get("ce_id"),
            "type": hd.get("ce_type"),
            "source": hd.get("ce_source"),
            "time": hd.get("ce_time"),
            "headers": hd,
            **data_value(record.body, hd),
        })
        return
    key = record.key if record.key is not None else "-"
    typer.echo(
        f"{record.offset:>6}  {key:<12}  {hd.get('ce_type', '-'):<20}  {hd.get('ce_id', '-')}  "
        f"{preview(record.body, hd)}"
    )


def topics(as_json: JsonOption = False, broker: BrokerOption = None) -> None:
    """List topics with their record counts, and each consumer group's position and lag.

    Example: herald topics --broker sqlite:///herald.db
    """
    infos = run(_topics(broker))
    if as_json:
        for info in infos:
            echo_json(dataclasses.asdict(info))
        return
    if not infos:
        err_console().print("no topics yet", markup=False)
        return
    table = Table(title="topics", title_justify="left")
    table.add_column("topic", no_wrap=True)
    table.add_column("messages", justify="right")
    table.add_column("partitions", justify="right")
    table.add_column("delayed", justify="right")
    table.add_column("group", no_wrap=True)
    table.add_column("committed", justify="right")
    table.add_column("lag", justify="right")
    for info in infos:
        first = [cell(info.name), cell(info.messages), cell(info.partitions), cell(info.delayed)]
        if not info.groups:
            table.add_row(*first, cell(None), cell(None), cell(None))
        for i, group in enumerate(info.groups):
            lead = first if i == 0 else [cell(""), cell(""), cell(""), cell("")]
            lag = cell(group.lag)
            if group.lag:
                lag.stylize("yellow")
            table.add_row(*lead, cell(group.group), cell(group.committed), lag)
    out_console().print(table)


async def _topics(broker: str | None) -> list[TopicInfo]:
    async with connected(broker) as app:
        return list(await app.admin().topics())
