"""Helpers for the `herald` command's tests: run it in-process or as `python -m herald`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald import App, DeadLetters, RetryPolicy
from herald.cli import app as cli_app


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The one `error:` line a failing command prints, and nothing else."""
        assert "Traceback" not in self.stdout + self.stderr, self.stderr
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.stderr!r}"
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


def invoke(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Outcome:
    """`herald ARGS` in this process, with HERALD_BROKER unset unless `env` sets it."""
    result = CliRunner().invoke(
        cli_app, list(args), input=input, env={"HERALD_BROKER": None, "COLUMNS": "200", **(env or {})}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERALD_BROKER", "HERALD_DEBUG")}
    env.update(extra)
    return env


def herald(*args: str, cwd: Path, input: str | None = None, timeout: float = 20) -> Outcome:
    """`python -m herald ARGS` in a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "herald", *args], cwd=cwd, input=input, capture_output=True,
        text=True, timeout=timeout, env=subprocess_env(),
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite broker in a file of its own."""
    return f"sqlite:///{tmp_path / 'herald.db'}"


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`herald run` puts the current directory on sys.path; keep that inside one test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


def make_dead_letters(url: str, count: int, topic: str = "orders", group: str = "billing") -> None:
    """Publish `count` events to a handler that always fails: each is dead-lettered at once."""

    async def go() -> None:
        app = App("failing", broker=url, retry=RetryPolicy(attempts=1, stages=0))

        @app.subscriber(topic, group=group)
        async def handle(event: dict[str, object]) -> None:
            raise RuntimeError(f"boom {event['n']}")

        async with app:
            for n in range(count):
                await app.publish(topic, {"n": n}, type="order.placed", key=f"k{n}")
            dead = DeadLetters(app.broker, app.retry)
            for _ in range(500):
                if len(await dead.list(topic)) >= count:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"{count} dead letters did not appear")

    asyncio.run(go())
