"""Bearer tokens and what each may do.

A token is given as `TOKEN` (every scope) or `SCOPES:TOKEN`, where SCOPES is
a comma-separated subset of `read`, `publish` and `admin`:

- `read`: topics, groups, lag, dead letters (list and show), streams;
- `publish`: POST events;
- `admin`: replay and discard dead letters.

Tokens are compared in constant time, every configured token each time, so
the answer's timing says nothing about which token was close.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from herald.errors import ConfigError
from herald.http.errors import HttpError

MIN_TOKEN = 16
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: it must fit in a header


class Scope(enum.StrEnum):
    READ = "read"
    PUBLISH = "publish"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Token:
    secret: bytes
    scopes: frozenset[Scope]

    @classmethod
    def parse(cls, spec: str) -> Token:
        """`TOKEN` or `SCOPES:TOKEN`; raises ConfigError naming what is wrong."""
        scopes: frozenset[Scope] = ALL_SCOPES
        head, sep, rest = spec.partition(":")
        names = [n.strip() for n in head.split(",")] if sep else []
        if sep and names and all(n in Scope.__members__.values() for n in names):
            scopes = frozenset(Scope(n) for n in names)
            spec = rest
        if len(spec) < MIN_TOKEN or not _TOKEN.fullmatch(spec):
            raise ConfigError(
                f"a gateway token must be at least {MIN_TOKEN} visible ASCII characters (no spaces); "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return cls(spec.encode(), scopes)


class Tokens:
    """The tokens a gateway accepts. With none, every request is allowed."""

    def __init__(self, tokens: Iterable[str | Token] = ()) -> None:
        self._tokens = [t if isinstance(t, Token) else Token.parse(t) for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None, scope: Scope) -> None:
        """Raise HttpError 401 (no or unknown token) or 403 (token lacks `scope`)."""
        if not self._tokens:
            return
        if not authorization:
            raise _unauthorized("missing bearer token: send the header Authorization: Bearer <token>")
        scheme, _, given = authorization.strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise _unauthorized("the Authorization header must be Bearer <token>")
        raw = given.encode("utf-8", "replace")
        found: Token | None = None
        for token in self._tokens:  # no early exit: the same work for every answer
            if hmac.compare_digest(token.secret, raw):
                found = token
        if found is None:
            raise _unauthorized("the token is not valid", invalid=True)
        if scope not in found.scopes:
            raise HttpError(403, "forbidden", f"this token may not {scope.value}; it has the scope(s) "
                            f"{', '.join(sorted(s.value for s in found.scopes))}")


def _unauthorized(detail: str, invalid: bool = False) -> HttpError:
    challenge = 'Bearer realm="herald"' + (', error="invalid_token"' if invalid else "")
    return HttpError(401, "unauthorized", detail, {"WWW-Authenticate": challenge})
