"""`flask run-all` (`make run`) as a user meets it, in real processes: a start that cannot work
says why in one line and exits non-zero before anything runs; a running one stops on Ctrl-C,
SIGINT or SIGTERM (to itself or to the `make` running it) within 3 s, leaving no process and
no file behind; two instances on two ports share nothing."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STOP_SECONDS = 3
START_SECONDS = 180  # migrations and gunicorn's boot on a busy 2-core machine


def free_port() -> int:
    """A free port whose next one is free too: run-all serves SDK streams on --port + 1."""
    while True:
        with socket.socket() as probe, socket.socket() as beside:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            try:
                beside.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


@pytest.fixture
def home(tmp_path):
    """An environment of its own: instance folder, TMPDIR and HOME inside tmp_path, and a
    marker that every process it starts inherits (to find any left running)."""
    for name in ("instance", "tmp", "home"):
        (tmp_path / name).mkdir()
    marker = uuid.uuid4().hex
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path / "instance"),
           "TMPDIR": str(tmp_path / "tmp"), "HOME": str(tmp_path / "home"),
           "SECRET_KEY": "run-all-test", "SWEEP_INTERVAL_SECONDS": "1",
           "RAILYARD_TEST_MARKER": marker}
    for name in ("REDIS_URL", "DATABASE_URL", "PORT", "HOST"):
        env.pop(name, None)
    return env


def run_all(env: dict, port: int, **overrides) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "run-all", "--port",
                           str(port)], cwd=ROOT, env={**env, **overrides}, capture_output=True,
                          text=True, timeout=START_SECONDS)


class Running:
    """A run-all started in the background; `lines` fills as it prints."""

    def __init__(self, command: list[str], env: dict, port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_until_running(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not any("Railyard is running at" in line for line in self.lines):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.1)

    def healthz(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=30) as r:
            return r.status

    def close(self) -> None:
        """After a failed assertion: stop it as a user would, then for sure."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self, signum: int, pid: int | None = None) -> float:
        started = time.monotonic()
        os.kill(pid or self.process.pid, signum)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError("still running 30 s after the signal:\n"
                                 + "".join(self.lines)) from None
        self.reader.join(5)
        return time.monotonic() - started


def processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def assert_nothing_left(env: dict, port: int) -> None:
    assert processes_with(env["RAILYARD_TEST_MARKER"]) == []
    instance = Path(env["INSTANCE_PATH"])
    assert {p.name for p in instance.iterdir()} <= {
        "railyard.db", "railyard.db-wal", "railyard.db-shm"}
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    assert list(Path(env["HOME"]).iterdir()) == []  # no ~/.gunicorn/gunicorn.ctl
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "running at" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_port_in_use_is_named_and_nothing_starts(home):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line_error(run_all(home, port))
    assert line.startswith(f"Error: Railyard cannot start: port {port} on 127.0.0.1 is not "
                           "free (Address already in use)")
    assert_nothing_left(home, port)


def test_an_unreachable_database_is_named_with_the_reason(home):
    port = free_port()
    line = one_line_error(run_all(
        home, port, DATABASE_URL="postgresql://railyard:secret@127.0.0.1:1/railyard"))
    assert line.startswith("Error: Railyard cannot start: database "
                           "postgresql+psycopg://railyard:***@127.0.0.1:1/railyard cannot be "
                           "reached: ")
    assert "secret" not in line
    assert_nothing_left(home, port)


def test_an_unreachable_redis_is_named_with_the_reason(home):
    port = free_port()
    line = one_line_error(run_all(home, port, REDIS_URL="redis://127.0.0.1:1/0"))
    assert line.startswith("Error: Railyard cannot start: Redis at redis://127.0.0.1:1/0 "
                           "(REDIS_URL) cannot be reached: ")
    assert_nothing_left(home, port)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_everything_within_3_s_and_leaves_nothing(home, signum):
    port = free_port()
    app = Running([sys.executable, "-m", "flask", "--app", "wsgi", "run-all", "--port",
                   str(port)], home, port)
    try:
        app.wait_until_running()
        assert app.healthz() == 200
        assert processes_with(home["RAILYARD_TEST_MARKER"])  # web, worker, sweeper, Redis
        took = app.stop(signum)
    finally:
        app.close()
    output = "".join(app.lines)
    assert app.process.returncode == 0, output
    assert took < STOP_SECONDS, output
    assert "Sign in as admin@railyard.local with password " in output
    assert_nothing_left(home, port)


def test_sigint_to_make_stops_it_and_a_second_instance_shares_nothing(home, tmp_path):
    """GNU make does not pass a SIGINT on to the command it runs; run-all notices by itself.
    Meanwhile a second instance, on its own port and folder, keeps serving."""
    makefile = tmp_path / "Makefile"
    port, other_port = free_port(), free_port()
    makefile.write_text(f"run:\n\t{sys.executable} -m flask --app wsgi run-all --port {port}\n")
    other_home = {**home, "INSTANCE_PATH": str(tmp_path / "other"),
                  "RAILYARD_TEST_MARKER": uuid.uuid4().hex}
    (tmp_path / "other").mkdir()
    made = Running(["make", "--no-print-directory", "-f", str(makefile), "run"], home, port)
    other = Running([sys.executable, "-m", "flask", "--app", "wsgi", "run-all", "--port",
                     str(other_port)], other_home, other_port)
    try:
        made.wait_until_running()
        other.wait_until_running()
        took = made.stop(signal.SIGINT)
        assert took < STOP_SECONDS, "".join(made.lines)
        assert_nothing_left(home, port)
        assert other.healthz() == 200
        other.stop(signal.SIGTERM)
        assert_nothing_left(other_home, other_port)
    finally:
        made.close()
        other.close()
