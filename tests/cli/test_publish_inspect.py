"""publish, then tail and topics show it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import herald, invoke, subprocess_env


def test_publish_prints_the_event_id_and_tail_shows_the_record(url: str) -> None:
    published = invoke(
        "publish", "orders", "--type", "order.placed", "--key", "order-1",
        "--data", '{"id": 1, "total": 9.5}', "-H", "tenant=acme", "--broker", url,
    )
    assert published.code == 0, published.stderr
    event_id = published.stdout.strip()
    assert str(uuid.UUID(event_id)) == event_id

    tail = invoke("tail", "orders", "--broker", url)
    assert tail.code == 0, tail.stderr
    [line] = tail.stdout.splitlines()
    offset, key, ce_type, ce_id, data = line.split()
    assert (key, ce_type, ce_id, data) == ("order-1", "order.placed", event_id, '{"id":1,"total":9.5}')
    assert int(offset) >= 1

    as_json = invoke("tail", "orders", "--json", "--broker", url)
    record = json.loads(as_json.stdout)
    assert record["id"] == event_id and record["type"] == "order.placed"
    assert record["key"] == "order-1" and record["source"] == "herald-cli"
    assert record["data"] == {"id": 1, "total": 9.5}
    assert record["headers"]["tenant"] == "acme"


def test_data_from_stdin_and_from_a_file(url: str, tmp_path: Path) -> None:
    assert invoke("publish", "t", "-t", "a", "--broker", url, input='{"from": "stdin"}').code == 0
    path = tmp_path / "event.json"
    path.write_text('{"from": "file"}')
    assert invoke("publish", "t", "-t", "b", "--data-file", str(path), "--broker", url).code == 0
    assert invoke("publish", "t", "-t", "c", "--data-file", "-", "--broker", url,
                  input='{"from": "dash"}').code == 0
    lines = invoke("tail", "t", "--json", "--broker", url).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["type"], r["data"]["from"]) for r in records] == [("a", "stdin"), ("b", "file"), ("c", "dash")]


def test_tail_prints_the_last_n_records(url: str) -> None:
    ids = [invoke("publish", "t", "-t", "x", "-d", f'{{"n": {n}}}', "-b", url).stdout.strip()
           for n in range(5)]
    out = invoke("tail", "t", "-n", "2", "-b", url).stdout.splitlines()
    assert [line.split()[3] for line in out] == ids[-2:]
    assert invoke("tail", "t", "-n", "0", "-b", url).stdout == ""


def test_topics_shows_counts_delayed_and_the_broker_comes_from_the_environment(url: str) -> None:
    env: dict[str, str | None] = {"HERALD_BROKER": url}
    invoke("publish", "orders", "-t", "x", "-d", "{}", env=env)
    invoke("publish", "orders", "-t", "x", "-d", "{}", env=env)
    invoke("publish", "orders", "-t", "later", "-d", "{}", "--delay", "3600", env=env)
    table = invoke("topics", env=env)
    assert table.code == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "orders" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")][:4] == ["orders", "2", "8", "1"]
    [info] = [json.loads(line) for line in invoke("topics", "--json", env=env).stdout.splitlines()]
    assert info == {"name": "orders", "partitions": 8, "messages": 2, "delayed": 1, "groups": []}
    # the delayed one is not in the log yet
    assert [line.split()[2] for line in invoke("tail", "orders", env=env).stdout.splitlines()] == ["x", "x"]


def test_topics_of_a_database_without_topics(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    empty = invoke("topics", "-b", f"sqlite:///{tmp_path / 'empty.db'}")
    assert (empty.code, empty.stdout, empty.stderr) == (0, "", "no topics yet\n")
    assert invoke("topics", "--json", "-b", f"sqlite:///{tmp_path / 'empty.db'}").stdout == ""


@pytest.mark.timeout(60)
def test_tail_follow_prints_new_records_until_ctrl_c(url: str, tmp_path: Path) -> None:
    invoke("publish", "live", "-t", "first", "-d", "{}", "-b", url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "herald", "tail", "live", "--follow", "--interval", "0.05", "-b", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        assert "first" in proc.stdout.readline()  # it is running and has printed the old one
        event_id = invoke("publish", "live", "-t", "second", "-d", '{"n": 2}', "-b", url).stdout.strip()
        line = proc.stdout.readline()
        assert "second" in line and event_id in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and out == ""


def test_python_dash_m_herald_works(url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    published = herald("publish", "t", "-t", "x", "-d", '{"a": 1}', "-b", url, cwd=tmp_path)
    assert published.code == 0, published.stderr
    tail = herald("tail", "t", "-b", url, cwd=tmp_path)
    assert published.stdout.strip() in tail.stdout
    assert time.monotonic() - started < 15
