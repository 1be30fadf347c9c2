"""`herald run module:app` in a real process, and how it refuses bad targets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.cli.conftest import herald, invoke, subprocess_env

SERVICE = '''
import json
from pathlib import Path

from herald import App

service = App("svc", broker="sqlite:///never-used.db")
HANDLED = Path(__file__).with_name("handled.jsonl")


@service.subscriber("orders", group="shipping")
async def ship(event: dict) -> None:
    with HANDLED.open("a") as out:
        out.write(json.dumps(event) + "\\n")
'''


@pytest.mark.timeout(60)
def test_run_handles_events_and_stops_on_sigterm(tmp_path: Path, url: str) -> None:
    (tmp_path / "svc.py").write_text(SERVICE)
    handled = tmp_path / "handled.jsonl"
    assert invoke("publish", "orders", "-t", "order.placed", "-d", '{"id": 7}', "-b", url).code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "herald", "run", "svc:service", "--broker", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 15
        while not (handled.exists() and handled.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert json.loads(handled.read_text()) == {"id": 7}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "svc started" in err  # the App's own log line
    assert not (tmp_path / "never-used.db").exists()  # --broker replaced the App's own
    [info] = [json.loads(line) for line in invoke("topics", "--json", "-b", url).stdout.splitlines()
              if json.loads(line)["name"] == "orders"]
    assert info["groups"] == [{"group": "shipping", "committed": 1, "lag": 0}]


def test_run_finds_the_attribute_app_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svc_default.py").write_text("from herald import App\napp = App('x')\n")
    # Found (else "no attribute"), then the broker URL is refused before anything runs.
    out = invoke("run", "svc_default", "--broker", "nosuch://x")
    assert out.code == 2
    assert out.error_line().startswith("error: unknown broker scheme 'nosuch'")


def test_an_import_error_of_the_app_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svc_badurl.py").write_text("from herald import App\napp = App('x', broker='nope')\n")
    out = invoke("run", "svc_badurl:app")
    assert out.code == 1
    line = out.error_line()
    assert line.startswith("error: importing 'svc_badurl' failed: ConfigError: bad broker URL 'nope'")
    assert line.endswith("svc_badurl.py:2)")  # where in the user's file, not in herald


CASES = [
    ("no_such_module_xyz:app", {}, 2, "error: no module named 'no_such_module_xyz'"),
    ("svc_noapp:app", {"svc_noapp.py": "x = 1\n"}, 2,
     "error: module 'svc_noapp' has no attribute 'app'; it defines no herald App"),
    ("svc_other:app", {"svc_other.py": "from herald import App\nservice = App('s')\n"}, 2,
     "error: module 'svc_other' has no attribute 'app'; it has service"),
    ("svc_notapp:app", {"svc_notapp.py": "app = 42\n"}, 2,
     "error: svc_notapp:app is an int, not a herald App"),
    ("svc_boom", {"svc_boom.py": "import json\n1 / 0\n"}, 1,
     "error: importing 'svc_boom' failed: ZeroDivisionError: division by zero ("),
    ("svc_syntax", {"svc_syntax.py": "def (:\n"}, 1, "error: importing 'svc_syntax' failed: SyntaxError: "),
    ("svc_dep", {"svc_dep.py": "import no_such_dependency_xyz\n"}, 1,
     "error: importing 'svc_dep' failed: ModuleNotFoundError: No module named 'no_such_dependency_xyz'"),
    ("not a module", {}, 2, "error: bad app 'not a module': expected module:attribute"),
    ("svc:", {}, 2, "error: no module named 'svc'"),
]


@pytest.mark.parametrize(("target", "files", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_run_refuses_bad_targets(
    target: str, files: dict[str, str], code: int, message: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    out = invoke("run", target)
    assert out.code == code
    assert out.error_line().startswith(message)
    if target == "svc_boom":
        assert out.error_line().endswith("svc_boom.py:2)")


def test_run_refuses_a_bad_broker_url_and_log_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svc_ok.py").write_text("from herald import App\napp = App('ok')\n")
    out = invoke("run", "svc_ok:app", "--broker", "nosuch://x")
    assert out.code == 2
    assert out.error_line().startswith("error: unknown broker scheme 'nosuch' in 'nosuch://x': expected ")
    out = invoke("run", "svc_ok:app", "--log-level", "loud")
    assert out.code == 2 and "--log-level must be one of" in out.error_line()


def test_run_on_a_database_in_a_missing_directory_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(SERVICE)
    out = herald("run", "svc:service", "-b", f"sqlite:///{tmp_path}/missing/dir/h.db", cwd=tmp_path)
    assert out.code == 1
    assert "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert "cannot open SQLite database" in line and "does not exist" in line


def test_demo_outside_a_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    out = herald("demo", cwd=tmp_path)
    assert out.code == 1
    assert out.error_line() == (
        f"error: herald demo runs examples/demo.py of a herald checkout, and {tmp_path} has none: "
        "run it from the root of a herald checkout"
    )
