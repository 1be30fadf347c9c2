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
from herald.cli._common import ENV_BROKER, BrokerOption, CliError, usage
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


DemoBrokerOption = Annotated[
    str | None,
    typer.Option("--broker", "-b", envvar=ENV_BROKER, metavar="URL", show_default=False,
                 help="Broker URL: run each service as a process of its own on it. Default: every "
                 "service in this process on a SQLite broker in a temporary directory."),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", metavar="URL", show_default=False,
                 help="PostgreSQL URL for the services' tables (a schema per service, dropped at the "
                 "end). Default: SQLite files in a temporary directory."),
]
CacheOption = Annotated[
    str | None,
    typer.Option("--cache", metavar="URL", show_default=False,
                 help="Redis URL for the services' caches (a key prefix per service, deleted at the "
                 "end). Default: memory://, each process its own."),
]
_DEMO_OPTIONS = {"store_url": "--store", "cache_url": "--cache"}


def demo(broker: DemoBrokerOption = None, store: StoreOption = None, cache: CacheOption = None) -> None:
    """Run the reference system of examples/ (from the root of a herald checkout).

    Starts every service, drives a workload under a progress bar (some of it
    failing on purpose), prints a summary per service, and exits 0 only when
    every figure agrees with the workload; else 1, saying what disagrees.

    Without --broker: every service in this one process on the embedded
    default (a SQLite broker and tables in a temporary directory, caches in
    memory); no servers needed.

    With --broker URL: each service in a process of its own on that broker,
    its HTTP API on a free port, driven over HTTP. Add --store and --cache
    to keep tables in PostgreSQL and caches in Redis.

    Example: herald demo --broker kafka://127.0.0.1:9092
    --store postgresql://herald:herald@127.0.0.1:5432/herald
    --cache redis://127.0.0.1:6379/0
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
    code = main(broker, **_demo_options(main, store_url=store, cache_url=cache))
    if inspect.isawaitable(code):
        code = run_async(_await(code))
    raise typer.Exit(int(code or 0))


def _demo_options(main: Any, **given: str | None) -> dict[str, str]:
    """The options main() takes; one it does not take but was given is an error."""
    try:
        parameters = inspect.signature(main).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    options = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in parameters:
            usage(f"{_DEMO_OPTIONS[name]}: examples/demo.py of this checkout takes no {name} "
                  "(its main(broker_url) runs on a broker only)")
        options[name] = value
    return options


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
