"""The gateway's one shape of error: `{"error": code, "detail": message}`.

`error` is a short, stable code a program can test (`bad-event`,
`unauthorized`, `too-large` ...); `detail` says what was wrong and how to fix
it, for a person. Every 4xx and 5xx the gateway sends has this shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse


class HttpError(Exception):
    """Raised by an endpoint to answer with `status` and a JSON error body."""

    def __init__(
        self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def bad_request(detail: str, error: str = "bad-request") -> HttpError:
    return HttpError(400, error, detail)


def error_response(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def response_for(exc: HttpError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.detail, exc.headers)
