"""`herald projection ...`: where each projection is, and rebuilding one from zero.

`status` needs only the store: checkpoints live in its database. `rebuild`
needs the projection's code, named as `--projections module:attribute`,
where the attribute is a Projection, a list of them, or a function without
arguments that returns either.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from herald.cli._common import (
    CliError,
    JsonOption,
    cell,
    echo_json,
    out_console,
    run,
    usage,
)
from herald.cli.run import _import
from herald.cli.store import StoreOption, opened
from herald.errors import ConfigError
from herald.store.projection import (
    DEFAULT_TABLE,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    projection_status,
)
from herald.store.snapshot import check_identifier

app = typer.Typer(
    help="Projections (read models fed from the event store): status and rebuild.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

TableOption = Annotated[
    str | None,
    typer.Option(
        "--table",
        metavar="NAME",
        help=f"The checkpoint table. Default: {DEFAULT_TABLE} (in the store's schema).",
    ),
]
_TARGET = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


@app.command("status")
def status(table: TableOption = None, as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Each projection's checkpoint, the store's head and the lag between them.

    Example: herald projection status --store postgresql://herald:herald@localhost/herald
    """
    _check_table(table)
    found = run(_status(store, table))
    if as_json:
        for item in found:
            echo_json(_as_dict(item))
        return
    if not found:
        out_console().print(
            f"no projection has a checkpoint in {table or DEFAULT_TABLE} yet: start a "
            "ProjectionRunner, or check --store", markup=False,
        )
        return
    grid = Table("projection", "position", "head", "lag", "updated")
    for item in found:
        grid.add_row(cell(item.name), cell(item.position), cell(item.head), cell(item.lag),
                     cell(_when(item.updated_at)))
    out_console().print(grid)


async def _status(url: str | None, table: str | None) -> list[ProjectionStatus]:
    async with opened(url) as store:
        return await projection_status(store, table)


@app.command("rebuild")
def rebuild(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The projection's name.")],
    projections: Annotated[
        str,
        typer.Option(
            "--projections",
            "-p",
            metavar="MODULE:ATTR",
            help="Where the projections are: a Projection, a list of them, or a function "
            "returning either, e.g. myservice.read_models:projections.",
        ),
    ],
    table: TableOption = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", min=1, help="Events per transaction.")
    ] = 500,
    store: StoreOption = None,
) -> None:
    """Empty a projection's read model and feed it every event again, from the first.

    The reset and the checkpoint's return to 0 commit together; a runner of
    the same projection in a running service notices and starts over too.

    Example: herald projection rebuild todo_list -p examples.todo.read_model:TodoList
    """
    if not name.strip():
        usage("NAME must be a projection's name, got an empty string")
    _check_table(table)
    found = load_projections(projections)
    if name not in {p.name for p in found}:
        names = ", ".join(sorted(p.name for p in found)) or "none"
        usage(f"{projections} has no projection named {name!r}; it has: {names}")
    started = time.monotonic()
    position = run(_rebuild(store, found, name, table, batch_size))
    out_console().print(
        f"rebuilt {name}: at position {position} in {time.monotonic() - started:.1f}s", markup=False
    )


async def _rebuild(
    url: str | None, projections: list[Projection], name: str, table: str | None, batch_size: int
) -> int:
    async with opened(url) as store:
        runner = ProjectionRunner(store, projections, table=table, batch_size=batch_size)
        return await runner.rebuild(name)


def load_projections(target: str) -> list[Projection]:
    """Import `module:attribute` and return the Projection objects it names."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not _TARGET.fullmatch(module_name) or not _TARGET.fullmatch(attribute):
        usage(f"bad --projections {target!r}: expected module:attribute, e.g. myservice:projections")
    value: Any = _import(module_name)
    for part in attribute.split("."):
        if not hasattr(value, part):
            usage(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if isinstance(value, type) and not issubclass(value, Projection):
        usage(f"{target} is the class {value.__name__}, not a Projection or a list of Projections")
    if callable(value) and not isinstance(value, Projection):
        try:
            value = value()  # a class or a factory without arguments
        except Exception as exc:
            raise CliError(f"calling {target} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(value, Projection):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        items = list(value)
        if items and all(isinstance(item, Projection) for item in items):
            return items
    kind = type(value).__name__
    article = "an" if kind[0] in "aeiouAEIOU" else "a"
    usage(f"{target} is {article} {kind}, not a Projection or a list of Projections")


def _check_table(table: str | None) -> None:
    if table is not None:
        try:
            check_identifier(table, "--table")
        except ConfigError as exc:
            usage(str(exc))


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _as_dict(item: ProjectionStatus) -> dict[str, Any]:
    return {
        "name": item.name,
        "position": item.position,
        "head": item.head,
        "lag": item.lag,
        "updated_at": None if item.updated_at is None else item.updated_at.isoformat(),
    }
