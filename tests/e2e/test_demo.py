"""`make demo` is a promise of the README: it must run and agree with itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_its_figures_agree() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "herald", "demo"], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all figures agree" in done.stdout
    assert "fail-todo-events" in done.stdout
