"""Where the reference system runs: one broker for all, and per service its
own tables and cache keys.

- broker: the URL given, else `sqlite:///<workdir>/herald.db` (the embedded default);
- tables: `sqlite:///<workdir>/<part>.db` (SQLite is one writer per file, so each
  service gets its own file), or with a PostgreSQL URL a schema per service and
  run, `herald_demo_<run>_<part>`, dropped when the demo ends;
- cache: process memory, or with a Redis URL the key prefix
  `herald-demo:<run>:<part>:`, deleted when the demo ends.

A run id keeps runs apart in PostgreSQL and Redis, and on Kafka too: the run
takes the namespace `<namespace given>demo<run>.` (its topics stay on the broker
afterwards). Other brokers must not hold records on the demo's topics yet (the
figures are checked against what the broker holds): `check_fresh` says so early.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from herald import App, ConfigError, HeraldError, from_url

from .parts import Place

STORE_SCHEMES = ("postgresql", "postgres")
CACHE_SCHEMES = ("redis", "rediss")
CONNECT_TIMEOUT = 10.0


def new_run_id() -> str:
    """Short, lowercase, unique enough: seconds of the day and six random hex digits."""
    return f"{int(time.time()) % 86_400:05d}{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Deployment:
    broker: str
    workdir: Path
    store: str | None = None  # a PostgreSQL URL, or None: SQLite files in workdir
    cache: str | None = None  # a Redis URL, or None: process memory
    run_id: str = field(default_factory=new_run_id)

    @classmethod
    def of(cls, broker: str | None, store: str | None, cache: str | None, workdir: Path) -> Deployment:
        """Check the URLs (ConfigError, one message for all problems) and fill the defaults."""
        problems = []
        if broker is not None and broker.startswith("memory:"):
            problems.append("a memory:// broker lives inside one process, and with --broker the demo "
                            "runs each service as a process of its own: give sqlite:///file.db or a "
                            "real broker, or leave --broker out for the one-process demo")
        elif broker is not None:
            try:
                from_url(broker)  # the scheme and options; connects nothing
            except ConfigError as exc:
                problems.append(str(exc))
        if store is not None and urlsplit(store).scheme not in STORE_SCHEMES:
            problems.append(f"--store takes a PostgreSQL URL (postgresql://user:password@host/db), "
                            f"got {store!r}; without it each service keeps its tables in SQLite")
        if cache is not None and urlsplit(cache).scheme not in (*CACHE_SCHEMES, "memory"):
            problems.append(f"--cache takes a Redis URL (redis://host:6379/0) or memory://, got {cache!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        if cache is not None and cache.startswith("memory:"):
            cache = None
        run_id = new_run_id()
        if broker is None:
            broker = f"sqlite:///{workdir / 'herald.db'}"
        elif urlsplit(broker).scheme == "kafka":
            namespace = dict(parse_qsl(urlsplit(broker).query)).get("namespace", "")
            broker = _with_query(broker, namespace=f"{namespace}demo{run_id}.")
        return cls(broker, workdir, store, cache, run_id)

    def schema(self, part: str) -> str:
        return f"herald_demo_{self.run_id}_{part}"

    def store_url(self, part: str) -> str:
        """The URL of `part`'s tables."""
        if self.store is None:
            return f"sqlite:///{self.workdir / f'{part}.db'}"
        return _with_query(self.store, schema=self.schema(part))

    def cache_url(self) -> str:
        return self.cache or "memory://"

    def cache_prefix(self, part: str) -> str:
        return f"herald-demo:{self.run_id}:{part}:"

    def place(self, part: str) -> Place:
        return Place(self.broker, self.store_url(part), self.cache_url(), self.cache_prefix(part))

    def describe(self) -> str:
        tables = f"PostgreSQL ({_without_password(self.store)}, a schema per service)" if self.store \
            else f"SQLite files in {self.workdir}"
        cache = f"Redis ({self.cache}, a key prefix per service)" if self.cache else "process memory"
        return f"broker {_without_password(self.broker)}; tables in {tables}; caches in {cache}"

    async def check_fresh(self, topics: Iterable[str]) -> None:
        """HeraldError when the broker already holds records on one of `topics`:
        an earlier run's events would be counted with this run's."""
        app = App("herald-demo", broker=self.broker)
        try:
            await app.start()
            try:
                stored = await app.admin().topics()
            except HeraldError:
                return  # a broker that cannot list its topics: nothing to check against
        finally:
            await app.stop()
        wanted = set(topics)
        used = sorted(f"{t.name} ({t.messages})" for t in stored if t.name in wanted and t.messages)
        if used:
            raise HeraldError(f"the broker {_without_password(self.broker)} already holds records on "
                              f"{', '.join(used[:4])}{' ...' if len(used) > 4 else ''} (an earlier demo?); "
                              "the figures are checked against the broker, so give the demo a fresh one "
                              "(a new SQLite file, or leave --broker out)")

    async def check_reachable(self) -> None:
        """Fail early, in one line (HeraldError), when the broker, PostgreSQL or Redis
        does not answer."""
        probe = App("herald-demo", broker=self.broker)
        try:
            await asyncio.wait_for(probe.start(), CONNECT_TIMEOUT * 3)
        except (TimeoutError, OSError, HeraldError) as exc:
            raise HeraldError(f"the broker at {_without_password(self.broker)} is not answering: "
                              f"{exc or type(exc).__name__}") from exc
        finally:
            await probe.stop()
        if self.store is not None:
            import asyncpg

            try:
                conn = await asyncpg.connect(_dsn(self.store), timeout=CONNECT_TIMEOUT)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                raise HeraldError(f"PostgreSQL at {_without_password(self.store)} is not answering: "
                                  f"{exc or type(exc).__name__}") from exc
            await conn.close()
        if self.cache is not None:
            import redis.asyncio as redis

            client = redis.Redis.from_url(self.cache, socket_connect_timeout=CONNECT_TIMEOUT)
            try:
                await client.ping()
            except (OSError, redis.RedisError) as exc:
                raise HeraldError(f"Redis at {self.cache} is not answering: {exc}") from exc
            finally:
                await client.aclose()

    async def cleanup(self, parts: list[str]) -> list[str]:
        """Drop this run's schemas and cache keys; returns what could not be cleaned."""
        problems = []
        if self.store is not None:
            import asyncpg

            try:
                conn = await asyncpg.connect(_dsn(self.store), timeout=CONNECT_TIMEOUT)
                try:
                    for part in parts:
                        await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema(part)}" CASCADE')
                finally:
                    await conn.close()
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                problems.append(f"could not drop the demo's schemas: {exc}")
        if self.cache is not None:
            import redis.asyncio as redis

            client = redis.Redis.from_url(self.cache, socket_connect_timeout=CONNECT_TIMEOUT)
            try:
                keys = [key async for key in client.scan_iter(match=f"herald-demo:{self.run_id}:*")]
                if keys:
                    await client.delete(*keys)
            except (OSError, redis.RedisError) as exc:
                problems.append(f"could not delete the demo's cache keys: {exc}")
            finally:
                await client.aclose()
        return problems


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) | params
    return urlunsplit(parts._replace(query=urlencode(query)))


def _dsn(url: str) -> str:
    """The URL as asyncpg takes it: without our own `schema` parameter."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _without_password(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
