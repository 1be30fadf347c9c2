"""Open an event store from a URL: `sqlite:///path.db` or `postgresql://...`.

PostgreSQL URLs may carry `?schema=name` (the schema of herald's tables,
default `public`) and `poll_interval=seconds`; every other query parameter
goes to asyncpg (server settings such as `application_name`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from herald.errors import ConfigError
from herald.store.base import EventStore

_EXAMPLES = "use sqlite:///herald.db or postgresql://user:password@host:5432/database"


def store_from_url(url: str) -> EventStore:
    """A new, not yet connected store for `url`; raises ConfigError for a bad URL."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"event store URL {url!r} is not a URL: {_EXAMPLES}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise ConfigError(f"event store URL {url!r} has an unknown scheme {scheme!r}: {_EXAMPLES}")


def _sqlite(url: str) -> EventStore:
    from herald.store.sqlite import SqliteEventStore

    rest = url.split("://", 1)[1]
    path, _, query = rest.partition("?")
    if query:
        raise ConfigError(f"event store URL {url!r}: sqlite URLs take no query parameters")
    # sqlite:///relative.db -> "/relative.db" with the host part empty; the
    # broker's convention: three slashes relative, four absolute.
    if not path.startswith("/"):
        raise ConfigError(f"event store URL {url!r} needs three slashes: sqlite:///herald.db")
    path = path[1:]
    if not path:
        raise ConfigError(f"event store URL {url!r} names no file: e.g. sqlite:///herald.db")
    return SqliteEventStore(path)


def _postgres(url: str) -> EventStore:
    from herald.store.postgres import PostgresEventStore

    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"event store URL {url!r}: {exc}") from exc
    if not parts.hostname and not parts.query:
        raise ConfigError(f"event store URL {url!r} names no host: {_EXAMPLES}")
    schema = "public"
    poll: float | None = None
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            schema = value
        elif key == "poll_interval":
            try:
                poll = float(value)
            except ValueError:
                raise ConfigError(f"event store URL {url!r}: poll_interval must be seconds") from None
        else:
            rest.append((key, value))
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    if poll is None:
        return PostgresEventStore(dsn, schema=schema)
    return PostgresEventStore(dsn, schema=schema, poll_interval=poll)
