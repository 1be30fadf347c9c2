"""The dashboard's static files: one HTML page, its CSS and its ES modules.

The files are read once, when the gateway is made, into a fixed table: a
request can only name one of them (no path is ever joined from the URL).
Every answer carries a Content-Security-Policy that allows scripts, styles
and requests from this origin only and no inline script, so event data that
the page shows (headers, payloads, error messages) can never run as code,
even if a rendering bug put it into markup.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

from herald.errors import ConfigError
from herald.http.errors import HttpError
from herald.http.state import GatewayState

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(html|css|js|svg)")
_TYPES = {"html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
          "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def load() -> dict[str, StaticFile]:
    """Every file of the `static` folder beside this module, by name."""
    table: dict[str, StaticFile] = {}
    folder = files("herald.http.dashboard").joinpath("static")
    entries = list(folder.iterdir()) if folder.is_dir() else []
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        table[entry.name] = StaticFile(body, _TYPES[match.group(1)],
                                       '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    if "index.html" not in table:
        raise ConfigError("the dashboard's files (herald/http/dashboard/static/) are missing from this "
                          "installation: reinstall herald, or create_gateway(..., dashboard=False)")
    return table


def serve(table: dict[str, StaticFile], name: str, request: Request) -> Response:
    """The file, or 304 when the browser has this version (ETag), or a 404."""
    found = table.get(name)
    if found is None:
        raise HttpError(404, "not-found", f"the dashboard has no file {name[:80]!r}")
    headers = {**SECURITY_HEADERS, "ETag": found.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


async def page(request: Request, state: GatewayState, *, table: dict[str, StaticFile]) -> Response:
    return serve(table, "index.html", request)


async def asset(request: Request, state: GatewayState, *, table: dict[str, StaticFile]) -> Response:
    return serve(table, request.path_params["file"], request)
