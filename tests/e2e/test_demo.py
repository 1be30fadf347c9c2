"""`make demo` is a promise of the README: it runs the whole reference system,
and its exit code says whether every figure agrees with the workload.

- the embedded default, end to end through `python -m herald demo`;
- a consumer that counts a read twice, and a service that is missing: exit 1,
  and the summary says what disagrees;
- each service in a process of its own on Kafka (a namespace of its own) with
  PostgreSQL and Redis. Those must be running: the test fails, never skips,
  without them (`bash scripts/services.sh up kafka postgresql redis`);
- bad URLs and a broker that holds an earlier run's records are refused in one
  line; a service process that ignores SIGTERM is killed, and that is reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest
from examples import demo
from examples.interactive.storage import Read
from examples.interactive.store_sqlite import SqliteInteractiveStorage
from examples.reference import catalogue
from examples.reference.parts import Place
from examples.reference.service_process import ServiceProcess, ServiceProcessError

from herald import App
from tests.e2e._services import KAFKA, POSTGRES_DSN, REDIS_URL, kafka_namespace, require

ROOT = Path(__file__).resolve().parents[2]
WIDE = {"COLUMNS": "200"}  # rich wraps at 80 columns when not on a terminal


def herald_demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herald", "demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **WIDE})


def every_service() -> list[tuple[str, Sequence[str]]]:
    return [(name, catalogue.adapter(name).SERVICES) for name in catalogue.PARTS]


def assert_names_every_service(out: str) -> None:
    for part, services in every_service():
        assert f"{part}: {', '.join(services)}" in out, f"the summary does not name {part}'s services"


def assert_counts_per_cluster_and_service(out: str) -> None:
    """herald's counts name the cluster (the store's two subscriptions are two rows),
    and the order saga's Apps report theirs, one row per subscriber."""
    for cluster in ("default", "north"):
        assert re.search(rf"│ store\s*│ shop-goods-events\s*│ {cluster}\s*│\s*[1-9]", out), cluster
    for app, topic in (("orders", "order-commands"), ("inventory", "inventory-commands"),
                       ("payment", "payment-commands"), ("order-saga", "order-saga-timeouts")):
        assert re.search(rf"│ {app}\s*│ {topic}\s*│ default\s*│\s*[1-9]", out), (app, topic)


def test_demo_runs_on_the_embedded_default_and_its_figures_agree() -> None:
    done = herald_demo(timeout=110)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    out = done.stdout
    assert "all figures agree" in out and "disagrees" not in out
    assert "every service in this process" in out
    assert_names_every_service(out)
    # What the summary promises: topics, herald's counts, feed pages, counters, saga outcomes.
    for shown in ("events per topic", "herald's counts per subscriber", "fail-feed_event",
                  "feed page 1 of user", "interactive counters", "order saga outcomes",
                  "cancelled: payment timed out", "fail-todo-events"):
        assert shown in out, shown
    assert_counts_per_cluster_and_service(out)


def test_a_read_counted_twice_makes_the_demo_fail_and_say_what_disagrees(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A consumer that is not idempotent: the first batch of read events is counted
    with one read more than was published."""
    original = SqliteInteractiveStorage.add_reads
    doubled: list[Read] = []

    async def add_reads(self: SqliteInteractiveStorage, reads: Sequence[Read]) -> object:
        if reads and not doubled:
            doubled.append(Read(f"{reads[0].event_id}-again", reads[0].biz, reads[0].biz_id))
            reads = [*reads, doubled[0]]
        return await original(self, reads)

    monkeypatch.setattr(SqliteInteractiveStorage, "add_reads", add_reads)
    monkeypatch.setenv("COLUMNS", "200")
    assert demo.main() == 1
    out = capsys.readouterr().out
    assert doubled
    assert "disagrees: interactive:" in out and "reads counted" in out, out[-4000:]
    assert "all figures agree" not in out
    assert_names_every_service(out)  # the rest still ran and is summarised


def test_a_missing_service_is_reported_and_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(catalogue.WORKLOADS, "jobs", "examples.jobs.no_such_workload")
    monkeypatch.setenv("COLUMNS", "200")
    assert demo.main() == 1
    out = capsys.readouterr().out
    missing = "jobs: examples/jobs/no_such_workload.py is missing, so the jobs service cannot take part"
    assert f"missing: {missing}" in out and f"disagrees: {missing}" in out
    assert " jobs: jobs " not in out  # not run, so not summarised as if it were


@pytest.mark.parametrize(("args", "message"), [
    (("--store", "sqlite:///x.db"), "error: --store takes a PostgreSQL URL"),
    (("--cache", "memcached://h"), "error: --cache takes a Redis URL"),
    (("--broker", "memory://"), "error: a memory:// broker lives inside one process"),
    (("--broker", "nosuch://x"), "error: unknown broker scheme 'nosuch'"),
])
def test_bad_urls_are_one_line_errors(args: tuple[str, str], message: str) -> None:
    done = herald_demo(*args, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert done.stdout == ""


async def _demo_schemas() -> list[str]:
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'herald_demo_%'")
    finally:
        await conn.close()
    return sorted(row[0] for row in rows)


def test_demo_runs_each_service_in_a_process_of_its_own_on_kafka_postgres_and_redis() -> None:
    require("postgresql", "redis")
    before = asyncio.run(_demo_schemas())
    with kafka_namespace() as namespace:
        broker = f"kafka://{KAFKA}?namespace={namespace}"
        done = herald_demo("--broker", broker, "--store", POSTGRES_DSN, "--cache", REDIS_URL,
                           timeout=280)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    out = done.stdout
    assert "each service in a process of its own" in out and "PostgreSQL" in out and "Redis" in out
    assert "all figures agree" in out
    assert_names_every_service(out)
    assert_counts_per_cluster_and_service(out)  # the order saga's four processes' counts too
    assert "todo: each service ran in a process of its own" in out
    assert set(asyncio.run(_demo_schemas())) <= set(before)  # the run dropped its schemas


def test_a_broker_that_holds_the_demos_topics_already_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    """The figures are checked against the broker: an earlier run's records would count."""
    url = f"sqlite:///{tmp_path / 'used.db'}"

    async def publish() -> None:
        async with App("earlier", broker=url) as app:
            await app.publish("feed_event", {"type": "follow"}, type="feed.event_created")

    asyncio.run(publish())
    done = herald_demo("--broker", url, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"error: the broker {url} already holds records on feed_event (1)")
    assert "give the demo a fresh one" in done.stderr


STUBBORN = """
import http.server, pathlib, signal, sys, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a service that does not stop
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
pathlib.Path(sys.argv[1]).write_text(str(server.server_port))
server.serve_forever()
"""


class StubbornProcess(ServiceProcess):
    def command(self) -> list[str]:
        return [sys.executable, "-c", STUBBORN, str(self.port_file)]


async def test_a_service_process_that_ignores_sigterm_is_killed_and_that_is_reported(tmp_path: Path) -> None:
    place = Place("sqlite:///unused.db", "sqlite:///unused.db", "memory://", "")
    process = StubbornProcess("jobs", "jobs", place, tmp_path, ROOT)
    await process.start(timeout=30)
    child = process.process
    assert child is not None and child.returncode is None
    with pytest.raises(ServiceProcessError, match="did not stop within 1 s of SIGTERM and was killed"):
        await process.stop(timeout=1)
    assert child.returncode == -signal.SIGKILL


def test_a_service_runs_alone_and_says_where(tmp_path: Path) -> None:
    """docs/examples/*.md: `python -m examples.reference.serve PART --port N` runs one
    service with its API; garbage arguments are one clear line."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.reference.serve", "interactive", "--port", str(port),
         "--broker", f"sqlite:///{tmp_path / 'herald.db'}", "--store", f"sqlite:///{tmp_path / 'i.db'}"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_demo/ready", timeout=2) as answer:
                    assert json.loads(answer.read())["ready"] is True
                    break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"serving on http://127.0.0.1:{port}" in err
    bad = subprocess.run([sys.executable, "-m", "examples.reference.serve", "interactive", "--port", "-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--port must be 0..65535" in bad.stderr
