"""What an idle page's change check costs, and 100 idle boards polling at once (issue 13).

    .venv/bin/python bench/live.py [--database URL] [--flags 10000] [--audit 200000]
                                   [--boards 100] [--seconds 30] [--interval 10]

Builds a project whose board holds --flags flags that wait for people (awaiting approval,
paused, halted: nothing moves by itself, so every open page is at the idle rate) and an audit
log of --audit entries, on SQLite (a file, the default) or the PostgreSQL server in --database
(a database of its own, dropped afterwards). Then:

1. one idle check (`GET /changes?project=…&since=<current token>`, answered 204), timed in
   process through the test client: server time per check and the bytes on the wire;
2. --boards browsers with the board open, each polling the check every --interval seconds
   (started at random offsets, like people opening their wall screens), against gunicorn
   (2 workers, 4 threads) for --seconds: latency of the checks, and the CPU the server (and
   PostgreSQL's backends) spent, per second of wall time;
3. the worst moment: all boards asking in the same instant.
"""

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.clock import now  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import (  # noqa: E402
    AuditEntry,
    Feature,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageAction,
)
from webapp.services.actors import SYSTEM  # noqa: E402
from webapp.services.pages import live  # noqa: E402
from webapp.services.platform import projects, users  # noqa: E402

IDLE = ["awaiting_approval"] * 6 + ["paused"] * 3 + ["halted"]


def build(app, flags: int, audit: int) -> dict:
    project = projects.create_project("Bench", SYSTEM)
    viewer = users.create_user("viewer@bench.local", "password123")
    projects.add_member(project, viewer, "viewer", SYSTEM)
    envs = projects.environments_of(project.id)
    pipeline = ReleasePipeline(project_id=project.id, name="Big release", status="published",
                               published_at=now())
    for position in range(10):
        stage = PipelineStage(position=position, name=f"Ring {position + 1}",
                              environment_id=envs[position * len(envs) // 10].id)
        stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    moment = now()
    feature_ids = db.session.execute(insert(Feature).returning(Feature.id), [
        {"project_id": project.id, "name": f"flag_{n:05d}", "value_type": "none",
         "created_at": moment} for n in range(flags)]).scalars().all()
    stages = pipeline.stages
    db.session.execute(insert(PipelineRun), [
        {"project_id": project.id, "pipeline_id": pipeline.id, "feature_id": fid,
         "stage_id": stages[n % 10].id, "stage_position": n % 10, "status": IDLE[n % 10],
         "version": 1 + n % 4, "entered_at": moment - timedelta(minutes=n % 600),
         "created_at": moment, "last_error": "Bench" if IDLE[n % 10] == "halted" else None,
         "paused_remaining_seconds": 600.0 if IDLE[n % 10] == "paused" else None}
        for n, fid in enumerate(feature_ids)])
    for start in range(0, audit, 20_000):
        db.session.execute(insert(AuditEntry), [
            {"created_at": moment, "project_id": project.id, "actor_type": "system",
             "actor_label": "bench", "event_type": "FEATURE_STATE_UPDATED",
             "object_type": "feature", "object_id": feature_ids[n % flags],
             "feature_id": feature_ids[n % flags], "message": f"bench entry {n}"}
            for n in range(start, min(audit, start + 20_000))])
    db.session.commit()
    return {"project_id": project.id, "pipeline_id": pipeline.id, "viewer_id": viewer.id}


def cookie_for(app, user_id: int) -> str:
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.dumps({"_user_id": str(user_id), "_fresh": True})


def token_url(client, project_id: int, pipeline_id: int) -> str:
    page = client.get(f"/projects/{project_id}/pipelines/{pipeline_id}/board").get_data(
        as_text=True)
    start = page.index('id="change_watch"')
    url = page[page.index('hx-get="', start) + 8:]
    return url[:url.index('"')].replace("&amp;", "&")


def in_process(app, world: dict, checks: int) -> None:
    client = app.test_client()
    client.set_cookie("session", cookie_for(app, world["viewer_id"]))
    url = token_url(client, world["project_id"], world["pipeline_id"])
    times, sizes = [], set()
    for _ in range(checks):
        started = time.perf_counter()
        response = client.get(url, headers={"HX-Request": "true"})
        times.append(time.perf_counter() - started)
        assert response.status_code == 204, response.status_code
        head = "".join(f"{k}: {v}\r\n" for k, v in response.headers.items())
        sizes.add(len("HTTP/1.1 204 NO CONTENT\r\n") + len(head) + 2 + len(response.data))
    with app.app_context():
        started = time.perf_counter()
        for _ in range(checks):
            live.project_token(world["project_id"])
            db.session.rollback()
        token_ms = (time.perf_counter() - started) / checks * 1000
    times.sort()
    print(f"idle check, in process ({checks} checks): median {statistics.median(times) * 1000:.2f}"
          f" ms, p95 {times[int(len(times) * 0.95)] * 1000:.2f} ms, answer 204 of "
          f"{max(sizes)} bytes (status line + headers, empty body); the token's reads alone "
          f"{token_ms:.2f} ms")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, folder: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
         "--worker-class", "gthread", "--keep-alive", "30", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("gunicorn did not start")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def server_processes(server: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(server.pid)
    return [parent, *parent.children(recursive=True)]


def postgres_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def boards(base: str, cookie: str, board_path: str, count: int, seconds: float,
           interval: float, processes, pg) -> None:
    sessions = []
    for _ in range(count):
        session = requests.Session()
        session.cookies.set("session", cookie, domain="127.0.0.1", path="/")
        page = session.get(base + board_path).text  # the board itself, as a browser opens it
        start = page.index('id="change_watch"')
        url = page[page.index('hx-get="', start) + 8:]
        sessions.append((session, base + url[:url.index('"')].replace("&amp;", "&")))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def poll(session, url):
        time.sleep(random.uniform(0, interval))
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = session.get(url, headers={"HX-Request": "true"})
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            time.sleep(max(0.0, interval - took))

    pg = pg()  # after the pages opened: the server's connections (backends) exist now
    cpu_before, pg_before, wall = cpu_seconds(processes), cpu_seconds(pg), time.monotonic()
    threads = [threading.Thread(target=poll, args=pair) for pair in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - wall
    used, pg_used = cpu_seconds(processes) - cpu_before, cpu_seconds(pg) - pg_before
    latencies.sort()
    print(f"{count} idle boards polling every {interval:g} s for {seconds:g} s: "
          f"{len(latencies)} checks ({len(latencies) / wall:.1f}/s), answers {statuses}; "
          f"latency median {statistics.median(latencies) * 1000:.1f} ms, p99 "
          f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms; server CPU "
          f"{used / wall * 100:.1f} % of one core"
          + (f", PostgreSQL backends {pg_used / wall * 100:.1f} % (every backend on the "
             f"machine)" if pg else ""))

    barrier = threading.Barrier(count)
    burst: list[float] = []

    def at_once(session, url):
        barrier.wait()
        started = time.perf_counter()
        session.get(url, headers={"HX-Request": "true"})
        with lock:
            burst.append(time.perf_counter() - started)

    threads = [threading.Thread(target=at_once, args=pair) for pair in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burst.sort()
    print(f"all {count} boards in the same instant: median {statistics.median(burst) * 1000:.1f}"
          f" ms, slowest {burst[-1] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="a PostgreSQL server URL (default: a SQLite file)")
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--audit", type=int, default=200_000)
    parser.add_argument("--boards", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--interval", type=float, default=live.IDLE_SECONDS)
    parser.add_argument("--checks", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="railyard-live-"))
    admin = None
    if args.database:
        name = f"railyard_bench_live_{os.getpid()}"
        admin = create_engine(args.database, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.database.rsplit("/", 1)[0] + "/" + name
        kind = "PostgreSQL"
    else:
        url, kind = f"sqlite:///{folder / 'bench.db'}", "SQLite file"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://unused",
                      "SECRET_KEY": "bench", "INSTANCE_PATH": str(folder)})
    server = None
    try:
        with app.app_context():
            db.create_all()
            started = time.perf_counter()
            world = build(app, args.flags, args.audit)
            if args.database:  # what autovacuum does in steady state: statistics, visibility
                with db.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            print(f"{kind}: {args.flags} flags waiting for people on a 10-stage board, "
                  f"{args.audit} audit entries (built in {time.perf_counter() - started:.0f} s);"
                  f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
            db.engine.dispose()
        in_process(app, world, args.checks)
        port = free_port()
        server = start_gunicorn(url.replace("postgresql+psycopg://", "postgresql://"), folder,
                                port)
        boards(f"http://127.0.0.1:{port}", cookie_for(app, world["viewer_id"]),
               f"/projects/{world['project_id']}/pipelines/{world['pipeline_id']}/board",
               args.boards, args.seconds, args.interval, server_processes(server),
               postgres_processes if args.database else list)
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(10)
        if admin is not None:
            with app.app_context():
                db.engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
