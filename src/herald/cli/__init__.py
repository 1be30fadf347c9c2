"""The `herald` command: run an app, publish, look into topics and dead letters.

Every error a user can cause prints one line to stderr, `error: ...`, and
exits with 2 (bad usage) or 1 (it failed at run time); HERALD_DEBUG=1 shows
the traceback instead.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from herald.cli import dlq, docs, inspect, projection, publish, run, serve, store
from herald.cli._common import CliError, debug, print_error
from herald.errors import ConfigError, HeraldError

__all__ = ["app", "main"]


class HeraldGroup(TyperGroup):
    """Turns every exception into one `error:` line and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        def invoke() -> Any:
            return super(HeraldGroup, self).main(
                args, prog_name, complete_var, standalone_mode=False, **extra
            )

        code = guarded(invoke)
        if standalone_mode:
            sys.exit(code)
        return code


def guarded(invoke: Callable[[], Any]) -> int:
    """Call the command line; return its exit code, printing errors as one line."""
    try:
        result = invoke()
    except CliError as exc:
        print_error(exc.message)
        return exc.code
    except typer.TyperException as exc:  # usage errors and the like
        if type(exc).__name__ == "NoArgsIsHelpError":  # `herald` alone: the help was printed
            message = exc.format_message()
            if message.strip():
                typer.echo(message)
            return 0
        print_error(_usage_message(exc))
        return exc.exit_code
    except typer.Abort:
        print_error("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except HeraldError as exc:
        if debug():
            raise
        print_error(str(exc))
        return 2 if isinstance(exc, ConfigError) else 1
    except Exception as exc:
        if debug():
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
        print_error(
            f"unexpected {type(exc).__name__}: {exc}{at}; set HERALD_DEBUG=1 to see the traceback"
        )
        return 1
    return result if isinstance(result, int) else 0


def _usage_message(exc: typer.TyperException) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message = f"{message} (see '{ctx.command_path} --help')"
    return message


app = typer.Typer(
    cls=HeraldGroup,
    name="herald",
    help="herald: typed, event-driven applications. Run apps, publish events, "
    "look into topics and dead letters.",
    epilog="The broker is --broker URL, else the HERALD_BROKER environment variable, "
    "else sqlite:///herald.db.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("run")(run.run)
app.command("publish")(publish.publish)
app.command("tail")(inspect.tail)
app.command("topics")(inspect.topics)
app.add_typer(dlq.app, name="dlq")
app.command("demo")(run.demo)
app.command("serve")(serve.serve)
app.add_typer(docs.app, name="docs")
app.add_typer(store.app, name="store")
app.add_typer(projection.app, name="projection")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `herald` script and of `python -m herald`; returns the exit code."""
    command = typer.main.get_command(app)
    code: int = command.main(args=argv, prog_name="herald", standalone_mode=False)
    return code
