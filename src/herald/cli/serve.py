"""`herald serve module:app`: the App's subscribers plus its HTTP gateway."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer

from herald.cli._common import BrokerOption, CliError, usage
from herald.cli.run import load_app
from herald.errors import ConfigError

ENV_TOKENS = "HERALD_HTTP_TOKENS"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def serve(
    target: Annotated[
        str,
        typer.Argument(metavar="MODULE:APP", help="Where the App is, as for `herald run`."),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        list[str] | None,
        typer.Option(
            "--token",
            metavar="[SCOPES:]TOKEN",
            envvar=ENV_TOKENS,
            show_default=False,
            help="Bearer token; repeat for more. SCOPES is read,publish,admin (default: all). "
            f"{ENV_TOKENS} may hold them, separated by spaces.",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without tokens on a non-loopback address.")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option("--store", metavar="URL|MODULE:ATTR",
                     help="An event store to serve under /streams: a URL (sqlite:///events.db) or "
                     "module:attribute naming an EventStore."),
    ] = None,
    max_body: Annotated[
        int, typer.Option("--max-body", metavar="BYTES", min=1, help="Largest request body.")
    ] = 1024 * 1024,
    broker: BrokerOption = None,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run an App (its subscribers and push subscriptions) and serve it over HTTP.

    POST /topics/{topic}/events publishes CloudEvents; GET /topics, /groups and
    /deadletters look inside; /openapi.json describes every route.

    Example: herald serve examples.todo:app --port 8080 --token "$(cat token.txt)"
    """
    level = log_level.upper()
    if level not in _LEVELS:
        usage(f"--log-level must be one of {', '.join(_LEVELS)}, got {log_level!r}")
    tokens = list(token or [])
    if not tokens and not no_auth and not _is_loopback(host):
        usage(f"--host {host} is reachable from other machines: give --token (or {ENV_TOKENS}), "
              "or --no-auth if that is really meant")
    try:
        import uvicorn

        from herald.http.gateway import create_gateway
    except ModuleNotFoundError as exc:
        raise CliError(f"herald serve needs {exc.name}: pip install 'herald[http]'") from exc
    app = load_app(target)
    if broker:
        app.use_broker(broker)
    event_store = _load_store(store) if store else None
    try:
        gateway = create_gateway(app, tokens=tokens, store=event_store, max_body=max_body)
    except ConfigError as exc:
        usage(str(exc))
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not tokens:
        logging.getLogger("herald.http").warning("serving without tokens: anyone who can reach "
                                                 "%s:%s may publish and replay", host, port)
    config = uvicorn.Config(gateway, host=host, port=port, log_level=level.lower(), lifespan="on",
                            server_header=False)
    server = uvicorn.Server(config)
    # uvicorn stops gracefully on SIGTERM and Ctrl-C, then raises the signal again for
    # the handler it found; with this one in place that ends in exit code 0, as `herald run`.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise CliError(f"could not serve on {host}:{port} (see the log above)")


def _stopped(signum: int, frame: FrameType | None) -> None:
    """The signal did its work (uvicorn shut down); nothing more to do."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_store(target: str) -> Any:
    import importlib

    from herald.cli.run import _import
    from herald.store.base import EventStore

    if "://" in target:
        from_url = getattr(importlib.import_module("herald.store.urls"), "store_from_url", None)
        if from_url is None:
            raise CliError("this herald cannot open an event store from a URL; give module:attribute")
        return from_url(target)  # a bad URL is a ConfigError: exit 2 with its message
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        usage(f"bad --store {target!r}: expected module:attribute naming an EventStore")
    value: Any = _import(module_name)
    for part in attribute.split("."):
        if not hasattr(value, part):
            usage(f"--store {target!r}: module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not isinstance(value, EventStore):
        usage(f"--store {target!r} is a {type(value).__name__}, not a herald EventStore")
    return value
