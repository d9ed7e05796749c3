"""SDK API throughput under gunicorn (2 workers) on a SQLite file database.

    .venv/bin/python bench/sdk.py [--duration 10] [--connections 16] [--worker-class sync]
                                  [--threads 1] [--keep DIR]

Builds a project with 100 flags and 50 segments (each overriding two flags in Development)
through the services, starts gunicorn with 2 sync workers on a loopback port, and drives load
from a second process: `wrk` when it is installed (apt-get install wrk), else a small Python
load generator in a subprocess (threads, keep-alive). Prints requests per second and latency
percentiles for `GET /api/v1/flags/` and `POST /api/v1/identities/` (a pool of 1,000
identities with traits, so segment rules are evaluated on every request).

Why sync workers: with keep-alive (gthread), each of a few long-lived connections stays with the
worker process that accepted it, and that accept race often hands most of them to one process:
half the CPUs idle and the rate halves from one run to the next (2,000 against 5,400 req/s).
Sync workers take one request per connection, so every request goes to a free worker.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.services import flag_changes, flags, projects, segments  # noqa: E402
from webapp.services.actors import SYSTEM  # noqa: E402

TARGETS = {"flags": (4000, 20.0), "identities": (1500, 20.0)}
PLANS = ["free", "pro", "team", "enterprise"]

WRK_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Environment-Key"] = "%(key)s"
local plans = {"free", "pro", "team", "enterprise"}
request = function()
  local n = math.random(0, 999)
  local body = string.format(
    '{"identifier":"user-%%d","traits":[{"trait_key":"plan","trait_value":"%%s"},' ..
    '{"trait_key":"age","trait_value":%%d}]}', n, plans[(n %% 4) + 1], 18 + (n %% 60))
  return wrk.format(nil, nil, nil, body)
end
"""

# A Python stand-in for wrk: N threads with keep-alive connections, latency per request.
PY_LOAD = r"""
import http.client, json, random, sys, threading, time
host, port, path, method, key, seconds, conns = sys.argv[1:8]
port, seconds, conns = int(port), float(seconds), int(conns)
plans = ["free", "pro", "team", "enterprise"]
latencies, lock, stop = [], threading.Lock(), time.monotonic() + seconds
def run():
    conn, mine = http.client.HTTPConnection(host, port), []
    headers = {"X-Environment-Key": key, "Content-Type": "application/json"}
    while time.monotonic() < stop:
        body = None
        if method == "POST":
            n = random.randrange(1000)
            body = json.dumps({"identifier": f"user-{n}", "traits": [
                {"trait_key": "plan", "trait_value": plans[n % 4]},
                {"trait_key": "age", "trait_value": 18 + n % 60}]})
        start = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        conn.getresponse().read()
        mine.append(time.perf_counter() - start)
    with lock:
        latencies.extend(mine)
threads = [threading.Thread(target=run) for _ in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
latencies.sort()
print(json.dumps({"requests": len(latencies), "seconds": seconds,
                  "p50": latencies[len(latencies) // 2] * 1000,
                  "p99": latencies[int(len(latencies) * 0.99)] * 1000}))
"""


def build(folder: Path) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://unused",
                      "SECRET_KEY": "bench", "INSTANCE_PATH": str(folder)})
    with app.app_context():
        db.create_all()
        project = projects.create_project("Bench", SYSTEM)
        development = projects.environments_of(project.id)[0]
        features = [
            flags.create_feature(project, f"flag_{n:03d}", SYSTEM, commit=False,
                                 value_type="string" if n % 2 else "none",
                                 default_value=f"value {n}" if n % 2 else None,
                                 default_enabled=n % 3 == 0)
            for n in range(100)
        ]
        for n in range(50):
            rules = [{"type": "ALL", "rules": [], "conditions": [
                {"property": "plan", "operator": "EQUAL", "value": PLANS[n % 4]},
                {"property": "age", "operator": "GREATER_THAN_INCLUSIVE", "value": str(18 + n)},
            ]}]
            segment = segments.create_segment(project, f"segment_{n:02d}", rules, SYSTEM,
                                              commit=False)
            for feature in (features[n], features[(n * 7 + 3) % 100]):
                flag_changes.apply_change(
                    {"kind": "override", "environment_id": development.id,
                     "feature_id": feature.id, "segment_id": segment.id, "enabled": True},
                    SYSTEM, project_id=project.id, event_type="SEGMENT_OVERRIDE_SET",
                    message="bench")
        db.session.commit()
        return url, development.client_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, folder: Path, port: int, worker_class: str,
                   threads: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", worker_class,
         "--threads", str(threads), "--keep-alive", "30", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/flags/", timeout=1)
        except urllib.error.HTTPError:
            return process  # 401 without a key: it answers
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("gunicorn did not start")


def run_wrk(url: str, key: str, seconds: int, connections: int, script: str | None) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-H", f"X-Environment-Key: {key}"]
    if script:
        command += ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    if "Requests/sec" not in output or "99%" not in output:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": rate, "p50": p50, "p99": p99, "errors": int(errors.group(1)) if errors else 0}


def _wrk_ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python(port: int, path: str, method: str, key: str, seconds: int,
               connections: int) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", PY_LOAD, "127.0.0.1", str(port), path, method, key,
         str(seconds), str(connections)], capture_output=True, text=True, check=True).stdout
    result = json.loads(output)
    return {"rate": result["requests"] / result["seconds"], "p50": result["p50"],
            "p99": result["p99"], "errors": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", help="build the database in this folder and keep it")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="railyard-sdk-"))
    folder.mkdir(parents=True, exist_ok=True)
    url, key = build(folder)
    port = free_port()
    server = start_gunicorn(url, folder, port, args.worker_class, args.threads)
    wrk = shutil.which("wrk")
    tool = "wrk (2 threads)" if wrk else "Python load generator (threads, keep-alive)"
    print(f"gunicorn: 2 workers ({args.worker_class}, {args.threads} threads), SQLite file "
          f"database; load: {tool}, {args.connections} connections, {args.duration} s per "
          f"endpoint; {os.cpu_count()} CPUs")
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        post_script = folder / "post.lua"
        post_script.write_text(WRK_POST % {"key": key})
        for name, path, method in (("flags", "/flags/", "GET"),
                                   ("identities", "/identities/", "POST")):
            if wrk:
                # Warm every identity (first writes), then measure.
                script = str(post_script) if method == "POST" else None
                run_wrk(base + path, key, 2, args.connections, script)
                result = run_wrk(base + path, key, args.duration, args.connections, script)
            else:
                run_python(port, "/api/v1" + path, method, key, 2, args.connections)
                result = run_python(port, "/api/v1" + path, method, key, args.duration,
                                    args.connections)
            rate_target, p99_target = TARGETS[name]
            verdict = "ok" if result["rate"] >= rate_target and result["p99"] <= p99_target \
                else "BELOW TARGET"
            print(f"{method} /api/v1{path:<14} {result['rate']:>8.0f} req/s   "
                  f"p50 {result['p50']:.2f} ms   p99 {result['p99']:.2f} ms   "
                  f"non-2xx {result['errors']}   (target ≥ {rate_target} req/s, "
                  f"p99 ≤ {p99_target:.0f} ms: {verdict})")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
