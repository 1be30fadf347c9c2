"""One part of the reference system as a process of its own (what `herald demo
--broker URL` starts for each service):

    python -m examples.reference.serve feed [--service feed] --broker kafka://127.0.0.1:9092 \\
        --store postgresql://.../herald?schema=s --cache redis://127.0.0.1:6379/0 \\
        --cache-prefix demo:feed: --port-file feed.port --stats-file feed.stats.json

It starts the part's Apps, serves its HTTP API on a free port of 127.0.0.1
(written to --port-file once it listens; GET /_demo/ready answers 200), and
the demo's fault-injection routes (publishing.py: events a well-behaved
client of the API cannot send, and the dead letters), and
on SIGTERM or Ctrl-C stops the Apps gracefully and writes herald's counts per
App and subscriber to --stats-file as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from . import catalogue, publishing
from .parts import Place, Served, apps_stats
from .service_process import READY_PATH


def _write(path: Path, text: str) -> None:
    """Whole or not at all: the demo polls for the file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def wrap(served: Served, stats_file: Path | None) -> Starlette:
    """The part's API with the readiness route, and its Apps' lifecycle."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        started = []
        try:
            for app in served.apps:
                await app.start()
                started.append(app)
            yield
        finally:
            for app in reversed(started):
                await app.stop()
            # Counts survive App.stop: these are final.
            if stats_file is not None:
                _write(stats_file, json.dumps(apps_stats(served.apps)))

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True, "apps": [app.name for app in served.apps]})

    demo_routes = publishing.routes(served.apps[0]) if served.apps else []
    return Starlette(routes=[Route(READY_PATH, ready, methods=["GET"]), *demo_routes,
                             Mount("/", app=served.api)], lifespan=lifespan)


async def serve(served: Served, port_file: Path | None, stats_file: Path | None, port: int = 0) -> int:
    # IPPROTO_TCP named: asyncio then sets TCP_NODELAY on each connection (with proto 0
    # it does not, and every answer waits 40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{port}: {exc.strerror}; pick another --port",
              file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn.Config(wrap(served, stats_file), log_level="warning", lifespan="on"))

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
        bound = sock.getsockname()[1]
        if port_file is not None:
            _write(port_file, str(bound))
        else:
            print(f"serving on http://127.0.0.1:{bound} (Ctrl-C stops)", file=sys.stderr)

    announcer = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        announcer.cancel()
    return 0 if server.started else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.reference.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=catalogue.PARTS)
    parser.add_argument("--service", metavar="NAME", help="which of the part's services (default: the part)")
    parser.add_argument("--broker", default="sqlite:///herald.db", metavar="URL",
                        help="default: sqlite:///herald.db, the embedded default")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="the part's tables (default: sqlite:///<part>.db)")
    parser.add_argument("--cache", default="memory://", metavar="URL")
    parser.add_argument("--cache-prefix", default="", metavar="PREFIX")
    parser.add_argument("--port", type=int, default=0, help="default: a free port, printed")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--stats-file", type=Path, help="write herald's counts here on exit")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if args.store is None:
        args.store = f"sqlite:///{args.part}.db"
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Retries and dead letters are part of the show; the demo's summary lists them.
    logging.getLogger("herald").setLevel(logging.ERROR)
    place = Place(args.broker, args.store, args.cache, args.cache_prefix)
    adapter = catalogue.adapter(args.part)
    service = args.service or args.part
    if service not in adapter.PROCESSES:
        parser.error(f"{args.part} runs as {', '.join(adapter.PROCESSES)}, not {service!r}")
    served = adapter.served(place, service)
    # uvicorn handles SIGTERM and Ctrl-C while it serves, then raises the signal again
    # once it has shut down; ignored outside serving, a graceful stop exits 0.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_IGN)
    return asyncio.run(serve(served, args.port_file, args.stats_file, args.port))


if __name__ == "__main__":
    raise SystemExit(main())
