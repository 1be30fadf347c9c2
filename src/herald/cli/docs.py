"""`herald docs asyncapi module:app`: documents generated from an App."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from herald.asyncapi import document
from herald.cli._common import CliError
from herald.cli.run import load_app

app = typer.Typer(
    help="Documents generated from an App.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("asyncapi")
def asyncapi(
    target: Annotated[
        str,
        typer.Argument(
            help="Where the App is: a module importable from the current directory, a colon, "
            "and the App's name in it (examples.todo.service:app).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.", dir_okay=False)
    ] = None,
    version: Annotated[str, typer.Option(help="The document's info.version.")] = "1.0.0",
) -> None:
    """Print the App's AsyncAPI 3.0 document (JSON): its channels, what it receives
    in which group, what it declares it publishes, and the events' schemas."""
    doc = document(load_app(target), version=version)
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from exc
    typer.echo(f"wrote {out}", err=True)
