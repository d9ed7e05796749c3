"""`flask run-all` (the README's `make run`): checks, then web + worker + sweeper (+ embedded
Redis) until Ctrl-C, SIGINT or SIGTERM, and a stop within STOP_SECONDS that leaves no files.

Each child runs in a session of its own, so a terminal's Ctrl-C reaches this process only and
the stop happens in order: the processes that use Redis first, Redis last.
"""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import redis
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from webapp import metrics, redis_conn

# Ctrl-C to "Stopped.": children get SIGTERM, and SIGKILL when this runs out (the sweeper
# re-drives whatever a killed worker had in hand, from the database).
STOP_SECONDS = 1.5
# gunicorn lets its workers finish their requests for this long (default 30 s).
WEB_GRACEFUL_SECONDS = 1
# How long the web server may take to answer its first request before the start counts as
# failed (a busy machine imports the app slowly).
WEB_START_SECONDS = 120
# A server that does not answer within this is "cannot be reached".
CONNECT_SECONDS = 3
# Signals that make (GNU make) catches and does not pass on to its child: it waits for it.
_MAKE_STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


def _die_with_us():
    """A preexec_fn: the child gets SIGTERM when run-all dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG), so nothing is left running without it. run-all starts its children
    from its one thread, where a preexec_fn is safe. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # the only user; Linux only

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, int(signal.SIGTERM))


class CannotStart(click.ClickException):
    """One line saying which dependency is missing and why; exit status 1."""

    def format_message(self) -> str:
        return f"Railyard cannot start: {self.message}"


def port_problem(host: str, port: int) -> str | None:
    """Why nothing could listen on host:port, or None when it is free."""
    try:
        # SO_REUSEADDR as gunicorn sets it, so a port in TIME_WAIT is not taken for busy.
        probe = socket.create_server((host, port))
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        return f"port {port} on {host} is not free ({reason}); stop what listens there or " \
               "choose another with PORT=..."
    probe.close()
    return None


def database_problem(url: str) -> str | None:
    """Why the database at url cannot be reached, or None when it answers."""
    args = {"connect_timeout": CONNECT_SECONDS} if url.startswith("postgresql") else {}
    engine = create_engine(url, connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return f"database {engine.url.render_as_string(hide_password=True)} cannot be " \
               f"reached: {reason}"
    finally:
        engine.dispose()
    return None


def redis_problem(url: str) -> str | None:
    """Why the Redis at url cannot be reached, or None when it answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_SECONDS,
                                  socket_timeout=CONNECT_SECONDS)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"Redis at {url} (REDIS_URL) cannot be reached: {error}"
    finally:
        client.close()
    return None


def process_specs(app: Flask, host: str, port: int,
                  realtime_port: int) -> list[tuple[str, list[str]]]:
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    specs = [
        ("web", [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
                 "--bind", f"{host}:{port}", "--access-logfile", "-",
                 "--graceful-timeout", str(WEB_GRACEFUL_SECONDS),
                 # Its default control socket is ~/.gunicorn/gunicorn.ctl, one for every
                 # instance a user starts: none, so two instances share nothing.
                 "--no-control-socket",
                 # Marks a dead worker's metrics files (webapp/metrics.py).
                 "--config", "python:webapp.gunicorn_conf", "wsgi:app"]),
        ("worker", [*flask, "worker"]),
        # SDK streams in a process of their own, so that open streams never hold web workers.
        ("realtime", [*flask, "realtime", "--host", host, "--port", str(realtime_port)]),
    ]
    if "sweeper" in app.cli.list_commands(click.Context(app.cli)):
        specs.append(("sweeper", [*flask, "sweeper"]))
    return specs


def _make_parent() -> int | None:
    """The pid of the GNU make that runs us (`make run`), directly or through its shell."""
    pid = os.getppid()
    for _ in range(2):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name in ("make", "gmake"):
                return pid
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # no /proc (not Linux): Ctrl-C still reaches the whole group
            return None
        pid = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("PPid:")))
    return None


def _make_was_signalled(pid: int) -> bool:
    """True while make handles SIGINT/SIGHUP/SIGQUIT: it blocks the signal in its handler and
    waits for its children without passing the signal on (`kill -INT <pid of make>`)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # make is gone
    blocked = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("SigBlk:")), 16)
    return any(blocked & (1 << (int(signum) - 1)) for signum in _MAKE_STOP_SIGNALS)


def _serves(host: str, port: int) -> bool:
    """True once the web server answers a request (its workers booted, not just listening)."""
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


class Supervisor:
    """The children of one run-all and the reason it stops."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stop_reason: str | None = None
        self.failed = False
        self.make_pid = _make_parent()
        self.parent = os.getppid()

    def request_stop(self, *_args) -> None:
        self.stop_reason = self.stop_reason or "signal"

    def start(self, name: str, command: list[str]) -> None:
        self.children.append((name, subprocess.Popen(command, start_new_session=True,
                                                     preexec_fn=_die_with_us())))

    def check(self) -> None:
        """Record why to stop: a child that exited, or our make (or parent) told to stop."""
        if self.stop_reason:
            return
        for name, child in self.children:
            if child.poll() is not None:
                self.stop_reason = f"{name} exited with {child.returncode}"
                self.failed = True
                return
        if os.getppid() != self.parent or (
                self.make_pid is not None and _make_was_signalled(self.make_pid)):
            self.stop_reason = "parent stopped"

    def stop(self) -> None:
        """SIGTERM to every child's session, SIGKILL to what is left after STOP_SECONDS."""
        for _name, child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for _name, child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(0.05, deadline - time.monotonic()))
            # Also what the child started in its session (gunicorn's workers, RQ's scheduler).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def run(app: Flask, host: str, port: int, upgrade, seed,
        realtime_port: int | None = None) -> int:
    """Check, start, supervise, stop; returns the exit status once everything has stopped.

    Raises CannotStart, before anything started, when the port is taken or the database or
    REDIS_URL cannot be reached. upgrade() and seed() run inside the app context.
    """
    realtime_port = realtime_port or port + 1
    for problem in (port_problem(host, port), port_problem(host, realtime_port),
                    database_problem(app.config["SQLALCHEMY_DATABASE_URI"])):
        if problem:
            raise CannotStart(problem)
    embedded = None
    running = False
    if app.config["REDIS_URL"]:
        if problem := redis_problem(app.config["REDIS_URL"]):
            raise CannotStart(problem)
    else:
        try:
            embedded = redis_conn.start_embedded(app.instance_path, name=f"redis-{port}",
                                                 preexec_fn=_die_with_us())
        except redis_conn.RedisUnavailable as error:
            raise CannotStart(f"embedded Redis: {error}") from None
        app.config["REDIS_URL"] = redis_conn.redis_url_of(embedded)
        click.echo(f"Embedded Redis at {app.config['REDIS_URL']}")
    supervisor = Supervisor()
    previous = {signum: signal.signal(signum, supervisor.request_stop)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        os.environ["REDIS_URL"] = app.config["REDIS_URL"]
        # Every child counts into the same folder; /metrics sums them (see webapp/metrics.py).
        os.environ[metrics.MULTIPROC_ENV] = metrics.prepare_multiproc_dir(app.instance_path)
        upgrade()
        seed()
        for name, command in process_specs(app, host, port, realtime_port):
            if supervisor.stop_reason:
                break
            supervisor.start(name, command)
        deadline = time.monotonic() + WEB_START_SECONDS
        while not supervisor.stop_reason and not _serves(host, port):
            supervisor.check()
            if time.monotonic() > deadline:
                supervisor.stop_reason = f"web did not answer on {host}:{port} within " \
                                         f"{WEB_START_SECONDS} s"
                supervisor.failed = True
            time.sleep(0.1)
        running = not supervisor.stop_reason
        if running:
            click.echo(f"Railyard is running at http://{host}:{port}/  (Ctrl-C stops everything)")
            click.echo(f"SDK realtime URL: http://{host}:{realtime_port}/")
        while not supervisor.stop_reason:
            supervisor.check()
            time.sleep(0.1)
    finally:
        started = time.monotonic()
        supervisor.stop()
        if embedded is not None:
            embedded.shutdown()
        metrics.remove_multiproc_dir(app.instance_path)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        click.echo(f"Stopped ({supervisor.stop_reason}) in {time.monotonic() - started:.1f} s.")
    if supervisor.failed and not running:
        raise CannotStart(supervisor.stop_reason)
    return 1 if supervisor.failed else 0
