"""`herald dlq ...`: list, show, replay and discard dead letters."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from herald.app import App
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
    usage,
)
from herald.deadletters import DeadLetter, DeadLetters, parse_id
from herald.retry import INTERNAL_HEADERS

app = typer.Typer(
    help="Dead letters: events that failed every retry, or could not be decoded. "
    "Ids look like fail-orders@42 (dead-letter topic @ offset).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

IdArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="ID",
        help="Dead letter id, <dead-letter topic>@<offset>, as `herald dlq list` prints it.",
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter (of --topic, if given).")]
TopicOption = Annotated[
    str | None,
    typer.Option("--topic", metavar="TOPIC", help="With --all: only this topic's dead letters."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before acting on --all.")]


def _dead_letters(app: App) -> DeadLetters:
    return DeadLetters(app.broker, app.retry)


@app.command("list")
def list_(
    topic: Annotated[
        str | None,
        typer.Argument(
            metavar="TOPIC",
            help="Original topic (orders) or dead-letter topic (fail-orders); default: all.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="At most N.")] = 100,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """List dead letters, oldest first, with why they failed.

    Example: herald dlq list orders --limit 20
    """
    letters = run(_list(broker, topic, limit))
    if as_json:
        for letter in letters:
            echo_json(_as_dict(letter))
        return
    if not letters:
        err_console().print("no dead letters", markup=False)
        return
    console = out_console()
    rows = [
        [x.id, x.group or "-", x.event_type or "-", str(x.attempts), _short_time(x.last_failure) or "-",
         _why(x)]
        for x in letters
    ]
    heads = ["id", "group", "type", "tries", "last failure", "why"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    widths[2] = min(widths[2], 24)
    if console.width - sum(widths[:5]) - 3 * len(heads) - 1 < 20:  # narrow: `show` has the time
        del heads[4], widths[4]
        rows = [r[:4] + r[5:] for r in rows]
    # The other columns keep their width; `why` gets what is left of the line.
    widths[-1] = max(12, min(widths[-1], console.width - sum(widths[:-1]) - 3 * len(heads) - 1))
    table = Table(title=f"{len(letters)} dead letter(s)", title_justify="left")
    for head, width in zip(heads, widths, strict=True):
        table.add_column(head, no_wrap=True, overflow="ellipsis", min_width=width, max_width=width,
                         justify="right" if head == "tries" else "left")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    console.print(table)


async def _list(broker: str | None, topic: str | None, limit: int) -> list[DeadLetter]:
    async with connected(broker) as app:
        return await _dead_letters(app).list(topic, limit=limit)


@app.command("show")
def show(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="Dead letter id, e.g. fail-orders@42.")],
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Show one dead letter: where it came from, why it failed, its headers and data.

    Example: herald dlq show fail-orders@42
    """
    parse_id(dead_letter_id)  # a malformed id is a usage error, whatever the broker
    letter = run(_show(broker, dead_letter_id))
    if as_json:
        echo_json(_as_dict(letter))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows: list[tuple[str, object]] = [
        ("id", letter.id),
        ("topic", letter.original_topic),
        ("group", letter.group),
        ("reason", letter.reason),
        ("error", _error(letter)),
        ("attempts", letter.attempts),
        ("first failure", letter.first_failure),
        ("last failure", letter.last_failure),
        ("event type", letter.event_type),
        ("event id", letter.event_id),
        ("key", letter.key),
    ]
    for name, value in rows:
        grid.add_row(name, cell(value))
    shown = {k: v for k, v in letter.headers.items() if k not in INTERNAL_HEADERS}  # already above
    for i, (name, value) in enumerate(sorted(shown.items())):
        grid.add_row("headers" if i == 0 else "", Text(f"{name}: {value}"))
    console = out_console()
    console.print(grid)
    console.print(Text("data", style="bold"))
    console.print(Text(_pretty_data(letter)))


async def _show(broker: str | None, dead_letter_id: str) -> DeadLetter:
    async with connected(broker) as app:
        return await _dead_letters(app).show(dead_letter_id)


@app.command("replay")
def replay(
    dead_letter_id: IdArgument = None,
    all_: AllOption = False,
    topic: TopicOption = None,
    to_topic: Annotated[
        bool,
        typer.Option(
            "--to-topic",
            help="Publish to the original topic, for every group (default: back to the group that failed).",
        ),
    ] = False,
    yes: YesOption = False,
    broker: BrokerOption = None,
) -> None:
    """Send dead letters back to their handler, then remove them.

    By default a dead letter goes through the retry topic to the one group that
    failed it; --to-topic republishes it on the original topic for every group.

    Examples: herald dlq replay fail-orders@42 | herald dlq replay --all --topic orders
    """
    _check_target(dead_letter_id, all_, topic)

    async def one(dead: DeadLetters) -> str:
        assert dead_letter_id is not None
        letter = await dead.replay(dead_letter_id, to_topic=to_topic)
        if to_topic or not letter.group:
            target = f"topic {letter.original_topic} (every group)"
        else:
            target = f"group {letter.group} of {letter.original_topic}"
        return f"replayed {letter.id} ({letter.event_type or 'no type'}) to {target}"

    async def each(dead: DeadLetters, letter: DeadLetter) -> None:
        await dead.replay(letter.id, to_topic=to_topic)

    typer.echo(run(_act(broker, dead_letter_id, topic, yes, "replay", one, each)))


@app.command("discard")
def discard(
    dead_letter_id: IdArgument = None,
    all_: AllOption = False,
    topic: TopicOption = None,
    yes: YesOption = False,
    broker: BrokerOption = None,
) -> None:
    """Remove dead letters for good.

    Examples: herald dlq discard fail-orders@42 | herald dlq discard --all --topic orders
    """
    _check_target(dead_letter_id, all_, topic)

    async def one(dead: DeadLetters) -> str:
        assert dead_letter_id is not None
        letter = await dead.discard(dead_letter_id)
        return f"discarded {letter.id} ({letter.event_type or 'no type'})"

    async def each(dead: DeadLetters, letter: DeadLetter) -> None:
        await dead.discard(letter.id)

    typer.echo(run(_act(broker, dead_letter_id, topic, yes, "discard", one, each)))


def _check_target(dead_letter_id: str | None, all_: bool, topic: str | None) -> None:
    if dead_letter_id is not None and all_:
        usage("give a dead letter ID or --all, not both")
    if topic is not None and not all_:
        usage("--topic goes with --all")
    if dead_letter_id is None and not all_:
        usage("give a dead letter ID (see `herald dlq list`) or --all")
    if dead_letter_id is not None:
        parse_id(dead_letter_id)


async def _act(
    broker: str | None,
    dead_letter_id: str | None,
    topic: str | None,
    yes: bool,
    verb: str,
    one: Callable[[DeadLetters], Awaitable[str]],
    each: Callable[[DeadLetters, DeadLetter], Awaitable[None]],
) -> str:
    async with connected(broker) as app:
        dead = _dead_letters(app)
        if dead_letter_id is not None:
            return await one(dead)
        # A snapshot first: a replayed letter that fails again must not be replayed twice.
        letters = await dead.list(topic, limit=sys.maxsize)
        of = f" of {topic}" if topic else ""
        if not letters:
            return f"no dead letters{of} to {verb}"
        if not yes and sys.stdin.isatty() and not typer.confirm(
            f"{verb} {len(letters)} dead letter(s){of}?"
        ):
            raise CliError(f"nothing done: {verb} not confirmed")
        columns = (TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err_console(), transient=True) as progress:
            task = progress.add_task(verb, total=len(letters))
            for letter in letters:
                await each(dead, letter)
                progress.advance(task)
        done = "replayed" if verb == "replay" else "discarded"
        return f"{done} {len(letters)} dead letter(s){of}"


def _why(letter: DeadLetter) -> str:
    why = _error(letter)
    if letter.reason != "handler-error":
        why = f"{letter.reason}: {why}" if why else letter.reason
    return why or "-"


def _error(letter: DeadLetter) -> str:
    if letter.error_type and letter.error_message:
        return f"{letter.error_type}: {letter.error_message}"
    return letter.error_type or letter.error_message or ""


def _short_time(iso: str | None) -> str | None:
    """2026-01-02T03:04:05.678901Z -> 2026-01-02 03:04:05."""
    return iso[:19].replace("T", " ") if iso else iso


def _as_dict(letter: DeadLetter) -> dict[str, Any]:
    out = {f.name: getattr(letter, f.name) for f in dataclasses.fields(letter) if f.name != "body"}
    out.update(data_value(letter.body, letter.headers))
    return out


def _pretty_data(letter: DeadLetter) -> str:
    value = data_value(letter.body, letter.headers)
    if "data" in value:
        return json.dumps(value["data"], indent=2, ensure_ascii=False)
    return preview(letter.body, letter.headers)
