"""The whole test suite (`make test`): the lint, then every test, spread over the cores
(pytest-xdist, worksteal) in random order (pytest-randomly), with mypy beside them. It reports
the run's wall time and CPU seconds (its workers and what they started included), and the
test time of each database.

The lint is `ruff check` over the code and the tests, then `lint-imports` (the import contracts
in pyproject.toml: views → services → models, jobs → services, nothing imports views, no cycle
between service packages or modules), all installed next to this Python; any finding stops the
run before a test starts. `mypy` (the type check of webapp and jobs, as pyproject.toml's
[tool.mypy] sets it) runs beside the tests from their start: a finding stops them.

What runs where: a test that uses the database under test (through the `postgres_server`
fixture: the app, the database and every fixture built on them depend on it) runs on SQLite and
again on PostgreSQL; a test that never touches that database (`flask run-all` on a SQLite
database of its own, the audit log's wording, pure functions) runs once. Browser journeys run
on PostgreSQL too only when marked `on_postgresql` (tests/conftest.py says why). The two
databases' tests share one queue, so the cores stay busy until the last test.

PostgreSQL: the server DATABASE_URL names, which must answer (a server named on purpose that
cannot be reached fails the run), else 127.0.0.1:5432 (user postgres) when it answers; without
one only SQLite is tested, with the reason printed. The tests create and drop databases of their
own there. The random order's seed is printed; extra arguments go to pytest (e.g.
`-p randomly -p no:randomly` for the files' order, or `--randomly-seed=N` to repeat one).
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg

LINTED = ["webapp", "jobs", "tests", "bench"]
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# pytest workers: two more than the cores. About a third of the tests' wall time is spent
# waiting on real processes (chaos runs' workers, Prometheus scrapes, browsers, `flask run-all`);
# with one worker more than a 2-core machine's cores, the cores sat at 40-60 % for minutes while
# three workers waited at once (4 min 2 s); with two more they stay busy to the end (3 min 25 s
# to 3 min 44 s for 20 s more CPU; five workers gained nothing more).
WORKERS = os.environ.get("TEST_WORKERS", str((os.cpu_count() or 2) + 2))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _plain(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def _postgres_server() -> tuple[str | None, str, bool]:
    """(server URL for the tests or None, why not, whether the user named it on purpose)."""
    named = os.environ.get("DATABASE_URL", "")
    on_purpose = named.startswith(("postgres://", "postgresql"))
    url = _plain(named if on_purpose else LOCAL_POSTGRES)
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as error:
        return None, f"{url.split('@')[-1]}: {str(error).strip().splitlines()[0]}", on_purpose
    return url.replace("postgresql://", "postgresql+psycopg://", 1), "", on_purpose


def _quick_lint() -> int:
    """ruff and the import contracts: a second or two, before any test starts."""
    tools = os.path.dirname(sys.executable)
    print("=== ruff check ===", flush=True)
    status = subprocess.call([os.path.join(tools, "ruff"), "check", *LINTED], cwd=ROOT)
    if status:
        return status
    print("=== lint-imports ===", flush=True)
    # This checkout's code, whichever checkout the venv's editable install points at.
    return subprocess.call([os.path.join(tools, "lint-imports"), "--no-cache"], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": ROOT})


def _bytecode_kept(env: dict[str, str], root: str) -> dict[str, str]:
    """PYTHONDONTWRITEBYTECODE (often set to keep __pycache__ folders out of a checkout) made
    every pytest worker compile the code and the tests from source again (~5 s of CPU each),
    and every process the tests start (workers, sweepers, `flask run-all`) the app (~0.3 s
    each, hundreds of them). The passes keep their bytecode in .pytest_cache/pycache instead,
    out of the checkout all the same."""
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        return env
    kept = {name: value for name, value in env.items() if name != "PYTHONDONTWRITEBYTECODE"}
    kept.setdefault("PYTHONPYCACHEPREFIX", os.path.join(root, ".pytest_cache", "pycache"))
    return kept


class Pass:
    """One command in the background: a pytest run, or mypy (`command`). Its output is shown as
    it comes (live) or kept and shown when it ends, so two at once do not mix their lines."""

    def __init__(self, label: str, extra_env: dict[str, str], args: list[str],
                 live: bool = False, command: list[str] | None = None) -> None:
        self.label = label
        self.live = live
        self.lines: list[str] = []
        env = _bytecode_kept({**os.environ, **extra_env}, ROOT)
        env.pop("DATABASE_URL", None)  # the tests build their own databases
        print(f"=== {label}: started{'' if live else ', shown when it ends'} ===", flush=True)
        self.started = time.monotonic()
        self.process = subprocess.Popen(command or [sys.executable, "-m", "pytest", *args],
                                        env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if self.live:
                sys.stdout.write(line)
                sys.stdout.flush()

    def finish(self) -> int:
        """Wait for the pass; print a line with its result, wall time and CPU time (its own and
        its workers', as the kernel counts them for the process and what it waited for)."""
        _pid, wait_status, usage = os.wait4(self.process.pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        self.process.returncode = status
        self.reader.join()
        seconds = time.monotonic() - self.started
        cpu = usage.ru_utime + usage.ru_stime
        verdict = "passed" if status == 0 else f"FAILED (exit {status})"
        timing = f"{_minutes(seconds)} wall, {cpu:.0f} s CPU"
        print(f"\n=== {self.label}: {verdict} in {timing} ===", flush=True)
        if not self.live:
            print("".join(self.lines).rstrip(), flush=True)
        last = next((line.strip("= \n") for line in reversed(self.lines) if line.strip()),
                    "no output")
        self.summary = f"{self.label}: {last} ({timing})"
        return status


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def main() -> int:
    started = time.monotonic()
    lint_status = _quick_lint()
    if lint_status:
        return lint_status
    seed = random.randrange(2**32)
    # worksteal: a worker that runs out of tests takes half of another's queue, so one slow
    # test (the route walk, a chaos run) does not leave a core idle at the end of a pass.
    args = ["-q", "-n", WORKERS, "--dist", "worksteal", f"--randomly-seed={seed}",
            *sys.argv[1:]]
    print(f"Random order seed {seed} (repeat: {sys.executable} scripts/run_tests.py "
          f"--randomly-seed={seed})", flush=True)

    server, reason, on_purpose = _postgres_server()
    if server is None and on_purpose:
        print(f"\nDATABASE_URL names a PostgreSQL server that cannot be reached ({reason}).\n"
              "Start it, fix DATABASE_URL, or unset it to test on SQLite only.", flush=True)
        return 1
    # mypy (~10 s of CPU from a fresh clone) runs beside the tests, and a finding stops them.
    mypy = Pass("mypy", {"PYTHONPATH": ROOT}, [],
                command=[os.path.join(os.path.dirname(sys.executable), "mypy")])
    where = "SQLite and PostgreSQL" if server else "SQLite"
    tests = Pass(f"tests on {where} (browser journeys included)",
                 {"RAILYARD_TEST_POSTGRES": server} if server else {}, args, live=True)
    try:
        if mypy.finish():
            return 1  # the tests are stopped below
        status = tests.finish()
    finally:  # Ctrl-C or SIGTERM: the tests stop with us
        if tests.process.poll() is None:
            tests.process.terminate()
    print()
    for one in (mypy, tests):
        print(one.summary)
    if server is None:
        print(f"PostgreSQL not tested: no server answered ({reason})")
    print(f"make test: {_minutes(time.monotonic() - started)} in all", flush=True)
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
