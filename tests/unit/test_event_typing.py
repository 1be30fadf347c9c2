"""Event classes with keywords in the class line pass mypy --strict in users' code."""

from __future__ import annotations

from pathlib import Path

from mypy import api

USER_CODE = '''
from herald import Event

class TodoCreated(Event, type="todo.created", version=2, subject="todo_id", aggregate="todo"):
    todo_id: str
    title: str

event = TodoCreated(todo_id="t1", title="water the plants")
subject: str | None = event.event_subject()
'''

def run_mypy(tmp_path: Path, code: str) -> tuple[str, int]:
    path = tmp_path / "user_code.py"
    path.write_text(code)
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                                str(path)])
    return out + err, status


def test_class_keywords_type_check(tmp_path: Path) -> None:
    out, status = run_mypy(tmp_path, USER_CODE)
    assert status == 0, out

