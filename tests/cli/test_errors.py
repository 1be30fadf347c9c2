"""Garbage in: one `error:` line on stderr, exit 2 (usage) or 1 (runtime), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import herald, invoke

P = ("publish", "orders", "-t", "x")

# (arguments, stdin, exit code, the start of the error line); "{tmp}" is the test's directory.
CASES: list[tuple[tuple[str, ...], str | None, int, str]] = [
    ((*P, "-d", "{}", "-b", "not a url"), None, 2, "error: bad broker URL 'not a url'"),
    ((*P, "-d", "{}", "-b", "memory"), None, 2, "error: bad broker URL 'memory'"),
    ((*P, "-d", "{}", "-b", "nosuch://h"), None, 2, "error: unknown broker scheme 'nosuch' in 'nosuch://h'"),
    ((*P, "-d", "{}", "-b", "sqlite://"), None, 2, "error: bad broker URL 'sqlite://': give a file"),
    ((*P, "-d", "{}", "-b", "sqlite:///{tmp}/h.db?foo=1"), None, 2, "error: unknown option 'foo'"),
    ((*P, "-d", "{}", "-b", "sqlite:///{tmp}/h.db?partitions=many"), None, 2,
     "error: option partitions='many'"),
    ((*P, "-d", "{}", "-b", "sqlite:///{tmp}/missing/dir/h.db"), None, 1,
     "error: cannot open SQLite database '{tmp}/missing/dir/h.db': "
     "directory '{tmp}/missing/dir' does not exist"),
    ((*P, "-d", "{bad"), None, 2, "error: --data is not a JSON document: Expecting property name"),
    ((*P, "-d", "[1, 2]"), None, 2, "error: --data must be a JSON object ({...}), got an array"),
    ((*P, "-d", "7"), None, 2, "error: --data must be a JSON object ({...}), got a number"),
    ((*P,), "not json", 2, "error: stdin is not a JSON document"),
    ((*P,), "", 2, "error: stdin is empty: expected a JSON object"),
    ((*P, "-f", "{tmp}/absent.json"), None, 2, "error: cannot read --data-file '{tmp}/absent.json'"),
    ((*P, "-d", "{}", "-f", "x.json"), None, 2, "error: give --data or --data-file, not both"),
    ((*P, "-d", "{}", "-H", "novalue"), None, 2, "error: bad --header 'novalue': expected NAME=VALUE"),
    ((*P, "-d", "{}", "-H", "ce_id=1"), None, 2, "error: header 'ce_id' is herald's own"),
    ((*P, "-d", "{}", "--delay", "-1"), None, 2, "error: Invalid value for '--delay'"),
    ((*P, "-d", "{}", "--delay", "soon"), None, 2, "error: Invalid value for '--delay'"),
    ((*P, "-d", "{}", "--delay", "inf"), None, 2, "error: --delay must be a finite number of seconds"),
    ((*P, "-d", "{}", "--delay", "nan"), None, 2, "error: Invalid value for '--delay'"),
    (("publish", "orders", "-d", "{}"), None, 2, "error: Missing option '--type'"),
    (("publish",), None, 2, "error: Missing argument 'TOPIC'"),
    (("publish", "", "-t", "x", "-d", "{}"), None, 2, "error: topic must be a non-empty string"),
    (("tail", "orders", "-b", "sqlite:///{tmp}/nothing.db"), None, 1, "error: no SQLite database at"),
    (("tail", "orders", "-n", "many"), None, 2, "error: Invalid value for '--lines'"),
    (("topics", "-b", "sqlite:///{tmp}/nothing.db"), None, 1, "error: no SQLite database at"),
    (("dlq", "list", "-b", "memory"), None, 2, "error: bad broker URL 'memory'"),
    (("dlq", "show", "nope"), None, 2, "error: bad dead letter id 'nope'"),
    (("run",), None, 2, "error: Missing argument 'MODULE:APP'"),
    (("nosuch",), None, 2, "error: No such command 'nosuch'"),
    (("topics", "--wat"), None, 2, "error: No such option: --wat"),
]


@pytest.mark.parametrize(("args", "stdin", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_garbage_in_one_error_line_out(
    args: tuple[str, ...], stdin: str | None, code: int, message: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the default sqlite:///herald.db lands here
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
    out = invoke(*args, input=stdin)
    assert out.code == code, out.stderr
    assert out.error_line().startswith(message.replace("{tmp}", str(tmp_path)))
    assert out.stdout == ""


def test_a_memory_broker_is_allowed_but_warned_about() -> None:
    out = invoke("publish", "t", "-t", "x", "-d", "{}", "-b", "memory://")
    assert out.code == 0
    assert out.stderr.startswith("warning: a memory:// broker lives inside one process")


def test_the_default_broker_is_herald_db_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("publish", "t", "-t", "x", "-d", "{}").code == 0
    assert (tmp_path / "herald.db").is_file()


@pytest.mark.parametrize("args", [
    (), ("run",), ("publish",), ("tail",), ("topics",), ("demo",),
    ("dlq",), ("dlq", "list"), ("dlq", "show"), ("dlq", "replay"), ("dlq", "discard"),
])
def test_every_command_answers_help(args: tuple[str, ...]) -> None:
    out = invoke(*args, "--help")
    assert out.code == 0, out.stderr
    assert "Usage: herald" in out.stdout
    if args and args != ("dlq",):
        assert "Example" in out.stdout


def test_herald_alone_prints_help() -> None:
    out = invoke()
    assert out.code == 0 and "Usage: herald" in out.stdout and out.stderr == ""


def test_real_processes_print_one_line_too(tmp_path: Path) -> None:
    for args, code in [
        (("publish", "t", "-t", "x", "-d", "{}", "-b", "memory"), 2),
        (("run", "no_such_module_xyz:app"), 2),
        (("dlq", "show", "x@notanumber"), 2),
        (("tail", "t", "-b", f"sqlite:///{tmp_path}/none.db"), 1),
    ]:
        out = herald(*args, cwd=tmp_path)
        assert out.code == code, out.stderr
        out.error_line()
