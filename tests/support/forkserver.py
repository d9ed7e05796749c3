"""Real worker and sweeper processes for the chaos runs, forked from a server that imported
Railyard's code once, as gunicorn's preload does.

A chaos run SIGKILLs a worker every second and starts another: started as a new Python, each
imported the whole app again (~1.5 s of CPU, dozens per run). Forked from this server, each is
still a process of its own in a session of its own, with the environment and folder it is
given, running the same `flask --app wsgi <command>` (the app is created after the fork, from
that environment); only the import of modules, which do nothing when imported, the ORM's
mappers, configured once, and the URL map, built once (tests/support/routing.py), are shared.

    server = ForkServer(root)          # once; server.close() at the end
    pid = server.spawn("worker", env)  # a new session: os.killpg(pid, ...) reaches its children
    server.kill(pid)                   # SIGKILLed with its children, reaped
"""

import contextlib
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


class ForkServer:
    def __init__(self, root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver"], cwd=root,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._answer() == "ready"

    def _ask(self, request: dict) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the fork server stopped (exit {self.process.poll()})"
        return line.strip()

    def spawn(self, command: str, env: dict[str, str]) -> int:
        return int(self._ask({"spawn": command, "env": env, "cwd": os.getcwd()}))

    def kill(self, pid: int) -> int:
        """SIGKILL the process and what it started (its session's group), reap it, and answer
        its exit status."""
        _kill(pid)
        return int(self._ask({"wait": pid}))

    def close(self) -> None:
        """Stop the server (it kills and reaps what it started and still runs) and reap it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # killed before its os.setsid(): it has started nothing yet
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _preload() -> None:
    import flask.cli  # noqa: F401
    import rq  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    import jobs
    import webapp
    from tests.support import routing

    for package in (webapp, jobs):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            __import__(module.name)
    # The ORM's mappers configured (each worker did it first thing: a fifth of a chaos run's
    # worker CPU), and the URL map built once as in the test apps (tests/support/routing.py):
    # each child builds its app from its own environment in 5 ms instead of 60.
    configure_mappers()
    routing.install()
    with tempfile.TemporaryDirectory() as instance:
        webapp.create_app({"INSTANCE_PATH": instance, "SQLALCHEMY_DATABASE_URI": "sqlite://",
                           "REDIS_URL": "redis://unused", "SECRET_KEY": "unused"}).url_map.update()


def _child(command: str, env: dict[str, str], cwd: str) -> None:
    """In the forked process: what `flask --app wsgi <command>` started in its own session
    with stdin, stdout and stderr on /dev/null would do."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    status = 1
    try:
        from flask.cli import main

        sys.argv = ["flask", "--app", "wsgi", command]
        main()
        status = 0
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 1
    finally:
        os._exit(status)


def _serve() -> None:
    _preload()
    started: set[int] = set()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "spawn" in request:
            pid = os.fork()
            if pid == 0:
                _child(request["spawn"], request["env"], request["cwd"])
            started.add(pid)
            print(pid, flush=True)
        else:
            pid = request["wait"]
            _pid, status = os.waitpid(pid, 0)
            started.discard(pid)
            print(os.waitstatus_to_exitcode(status), flush=True)
    for pid in started:
        _kill(pid)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    _serve()
