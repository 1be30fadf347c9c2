"""`herald run module:app` and `herald demo`."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Awaitable
from types import ModuleType
from typing import Annotated, Any

import typer

from herald.app import App
from herald.cli._common import BrokerOption, CliError, usage
from herald.cli._common import run as run_async

log = logging.getLogger("herald.cli")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Frames in these are not the user's code: an error's place is shown in the user's file.
_NOT_THEIRS = tuple(
    {os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep, "<"}
    | {sysconfig.get_path(name) + os.sep for name in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:APP",
            help="Where the App is: a module importable from the current directory, a colon, "
            "and the App's attribute name (default: app).",
        ),
    ],
    broker: BrokerOption = None,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run an App's subscribers until SIGTERM or Ctrl-C, then stop gracefully.

    Without --broker (or HERALD_BROKER), the App keeps the broker it was made with.

    Example: herald run examples.todo:app --broker sqlite:///todo.db
    """
    level = log_level.upper()
    if level not in _LEVELS:
        usage(f"--log-level must be one of {', '.join(_LEVELS)}, got {log_level!r}")
    app = load_app(target)
    if broker:
        app.use_broker(broker)  # its named clusters stay as they are
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.info("running %s (%d subscriber(s)) on the %s broker",
             app.name, len(app.subscribers), app.broker.name)
    run_async(app.serve())


def load_app(target: str) -> App:
    """Import `module:attribute` (current directory first on sys.path) and return the App."""
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "app"
    if module_name.endswith(".py"):  # a path: examples/todo.py -> examples.todo
        module_name = module_name[:-3].replace(os.sep, ".").replace("/", ".").strip(".")
    if not _DOTTED.match(module_name) or not _DOTTED.match(attribute):
        usage(f"bad app {target!r}: expected module:attribute, e.g. myservice:app")
    module = _import(module_name)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            apps = [name for name, v in vars(module).items() if isinstance(v, App)]
            hint = f"; it has {', '.join(apps)}" if apps else "; it defines no herald App"
            usage(f"module {module_name!r} has no attribute {attribute!r}{hint}")
        value = getattr(value, part)
    if not isinstance(value, App):
        kind = type(value).__name__
        usage(f"{module_name}:{attribute} is {'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind}, "
              "not a herald App")
    return value


def _import(module_name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            usage(f"no module named {missing!r} in {cwd} or on sys.path")
        raise CliError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise CliError(f"importing {module_name!r} failed: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """`Type: message (file:line)` on one line; the line is the user's code's, not herald's."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    theirs = [f for f in frames if not f.filename.startswith(_NOT_THEIRS)] or frames
    at = f" ({theirs[-1].filename}:{theirs[-1].lineno})" if theirs else ""
    if isinstance(exc, SyntaxError):
        at = f" ({exc.filename}:{exc.lineno})"
        return f"SyntaxError: {exc.msg}{at}"
    return f"{type(exc).__name__}: {exc}{at}"


def demo(broker: BrokerOption = None) -> None:
    """Run the reference system of examples/ (needs a herald checkout as current directory).

    Example: herald demo --broker sqlite:///demo.db
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module("examples.demo")
    except ModuleNotFoundError as exc:
        if exc.name in ("examples", "examples.demo"):
            raise CliError(
                f"herald demo runs examples/demo.py of a herald checkout, and {cwd} has none: "
                "run it from the root of a herald checkout"
            ) from exc
        raise CliError(f"importing examples.demo failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise CliError(f"importing examples.demo failed: {_describe(exc)}") from exc
    main = getattr(module, "main", None)
    if not callable(main):
        raise CliError("examples/demo.py has no main(broker_url) function")
    code = main(broker)
    if inspect.isawaitable(code):
        code = run_async(_await(code))
    raise typer.Exit(int(code or 0))


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
