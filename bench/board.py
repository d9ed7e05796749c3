"""Progress board with 10,000 flags in flight over a 30-stage published pipeline.

    .venv/bin/python bench/board.py [--databases sqlite,postgresql] [--flags 10000]
                                    [--stages 30] [--launched 3000] [--runs 40]

On a SQLite file and on a PostgreSQL database created here and dropped after (BENCH_POSTGRES's
server). Times are server time in-process (the test client), the load average printed with
them. On a loaded machine wall time mostly measures the wait for a CPU, so each figure also
has its CPU: this thread's (Python: views, SQLAlchemy, templates) and, on PostgreSQL, that of
the database's backends per request (read from /proc when the server is on this machine);
their sum is the server time of a quiet machine. Sizes are bytes, KiB = 1,024 bytes, and gzip
is what the browser receives when it accepts gzip (webapp/compression.py).

Builds the project through the services, the pipeline and its runs straight into the tables
(bulk inserts: features, runs in every status spread over the stages, their stage executions,
flags launched over the last 30 days), then times through the test client, signed in as a
viewer (the team lead who watches) and as an editor (cards carry controls):
the full page, the polling fragment (the `board` block) and its size, a search, and a column
opened with "show more". The audit page with 1,000,000 entries is bench/audit.py's job.
"""

import argparse
import gzip
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from sqlalchemy import event, insert, text  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.clock import now  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import (  # noqa: E402
    Feature,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageAction,
    StageExecution,
)
from webapp.services.actors import SYSTEM  # noqa: E402
from webapp.services.platform import projects, users

STATUSES = ["waiting"] * 14 + ["rolling_out"] * 3 + ["paused", "halted", "awaiting_approval"]


def build(app, flags: int, stage_count: int, launched: int) -> tuple[int, int, dict]:
    started = time.perf_counter()
    project = projects.create_project("Bench", SYSTEM)
    people = {}
    for role in ("viewer", "editor"):
        user = users.create_user(f"{role}@bench.local", "password123")
        projects.add_member(project, user, role, SYSTEM)
        people[role] = user.get_id()  # "<id>:<epoch>", what the session cookie holds
    envs = projects.environments_of(project.id)
    pipeline = ReleasePipeline(
        project_id=project.id, name="Big release", status="published", published_at=now()
    )
    for position in range(stage_count):
        env = envs[position * len(envs) // stage_count]
        rollout = position % 5 == 4
        stage = PipelineStage(
            position=position,
            name=f"Ring {position + 1}",
            environment_id=env.id,
            trigger_type="WAIT_FOR" if position % 2 else "ON_ENTER",
            wait_seconds=3600 * (position % 7 + 1) if position % 2 else None,
        )
        stage.actions.append(
            StageAction(
                position=0,
                action_type="PHASED_ROLLOUT" if rollout else "TOGGLE_FEATURE",
                enabled=True,
                rollout_initial=10 if rollout else None,
                rollout_step=20 if rollout else None,
                rollout_interval_seconds=1800 if rollout else None,
            )
        )
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    stages = [(s.id, s.position, s.wait_seconds or 0) for s in pipeline.stages]
    moment = now()
    rng = random.Random(6)
    total = flags + launched
    feature_ids = (
        db.session.execute(
            insert(Feature).returning(Feature.id),
            [
                {
                    "project_id": project.id,
                    "name": f"{'feature' if n < flags else 'shipped'}_{n:05d}",
                    "value_type": "none",
                    "created_at": moment,
                }
                for n in range(total)
            ],
        )
        .scalars()
        .all()
    )
    rows, executions = [], []
    for n, feature_id in enumerate(feature_ids):
        in_flight = n < flags
        stage_id, position, wait = stages[rng.randrange(stage_count) if in_flight else -1]
        status = rng.choice(STATUSES) if in_flight else "launched"
        entered = moment - timedelta(seconds=rng.randrange(1, 3600 * 24 * (1 if in_flight else 29)))
        rows.append(
            {
                "project_id": project.id,
                "pipeline_id": pipeline.id,
                "feature_id": feature_id,
                "stage_id": stage_id,
                "stage_position": position,
                "status": status,
                "version": 1,
                "entered_at": entered,
                "created_at": entered,
                "due_at": entered + timedelta(seconds=wait)
                if status in ("waiting", "rolling_out")
                else None,
                "rollout_percent": rng.choice([10, 30, 50, 70, 90])
                if status == "rolling_out"
                else None,
                "paused_remaining_seconds": 1234.0 if status == "paused" else None,
                "last_error": "The value no longer fits the flag" if status == "halted" else None,
                "ended_at": entered if not in_flight else None,
                "end_reason": "launched" if not in_flight else None,
            }
        )
    run_ids = (
        db.session.execute(insert(PipelineRun).returning(PipelineRun.id), rows).scalars().all()
    )
    for run_id, row in zip(run_ids, rows, strict=True):
        # The current stage's execution only: the board reads none (the flag page reads one run's).
        stage_id, position, _ = stages[row["stage_position"]]
        executions.append(
            {
                "run_id": run_id,
                "stage_id": stage_id,
                "position": position,
                "entered_at": row["entered_at"],
                "snapshot": {},
                "completed_at": row["ended_at"],
            }
        )
    for start in range(0, len(executions), 20_000):
        db.session.execute(insert(StageExecution), executions[start : start + 20_000])
    db.session.commit()
    print(
        f"built {flags:,} flags in flight over {stage_count} stages, {launched:,} launched, "
        f"{len(executions):,} stage executions in {time.perf_counter() - started:.1f} s"
    )
    return project.id, pipeline.id, people


def database_cpu(app) -> float:
    """CPU seconds used so far by this database's PostgreSQL backends (0 on SQLite, or when the
    server is not on this machine): the database's share of server time, which on a loaded
    machine wall time no longer shows."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return 0.0
        pids = db.session.scalars(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).all()
        db.session.rollback()
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed(app, client, url: str, runs: int, headers: dict | None = None):
    """p50 wall time, p50 CPU time of this thread (steady when other processes load the
    machine), mean CPU of the database's backends per request, body size, size on the wire
    (the browser accepts gzip), status."""
    headers = {**(headers or {}), "Accept-Encoding": "gzip"}
    response = client.get(url, headers=headers)  # warm-up
    assert response.status_code in (200, 286), (url, response.status_code)
    wall, cpu = [], []
    database_before = database_cpu(app)
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        response = client.get(url, headers=headers or {})
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
    database = (database_cpu(app) - database_before) * 1000 / runs
    wire = response.get_data()
    gzipped = response.headers.get("Content-Encoding") == "gzip"
    body = gzip.decompress(wire) if gzipped else wire
    return (
        statistics.median(wall),
        statistics.median(cpu),
        database,
        len(body),
        len(wire),
        response.status_code,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--stages", type=int, default=30)
    parser.add_argument("--launched", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="cProfile one polling fragment")
    parser.add_argument("--dump", help="write the editor's polling fragment to this file")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind, url, folder in support.databases(args.databases, "railyard_bench_board"):
        print(f"--- {kind}")
        _bench(args, folder, url)


def _bench(args, folder: Path, url: str) -> None:
    if True:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": "redis://unused",
                "SECRET_KEY": "bench",
                "INSTANCE_PATH": str(folder),
                "TESTING": True,
            }
        )
        with app.app_context():
            db.create_all()
            project_id, pipeline_id, people = build(app, args.flags, args.stages, args.launched)
            if db.engine.dialect.name == "postgresql":
                # What autovacuum does within a minute of this many inserts (its insert
                # threshold): statistics for the planner, the visibility map for index-only
                # counts. Without it the first minute's plans are those of an empty table.
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            statements = []
            event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(1))
        base = f"/projects/{project_id}/pipelines/{pipeline_id}/board"
        hx = {"HX-Request": "true"}
        if args.dump:
            client = app.test_client()
            with client.session_transaction() as session:
                session["_user_id"] = people["editor"]
            Path(args.dump).write_bytes(client.get(base, headers=hx).get_data())
        if args.profile:
            _profile(app, people["editor"], base, hx)
            return
        print(f"before timing: {support.load()}")
        print(
            f"{'as':7} {'what':32} {'p50 ms':>7} {'CPU ms':>7} {'DB CPU':>7} {'bytes':>8} "
            f"{'wire':>7} {'status':>6} {'SQL':>4}"
        )
        results = {}
        for role in ("viewer", "editor"):
            client = app.test_client()
            with client.session_transaction() as session:
                session["_user_id"] = people[role]
                session["_fresh"] = True
            for label, url, headers in [
                ("full page", base, None),
                ("polling fragment", base, hx),
                ("search fragment (q=feature_01)", f"{base}?q=feature_01", hx),
                ("fragment, a column opened to 100", f"{base}?s7=100", hx),
                ("pipelines overview page", f"/projects/{project_id}/board", None),
            ]:
                statements.clear()
                client.get(url, headers=headers or {})
                count = len(statements)
                p50, cpu, database, size, zipped, status = timed(app, client, url, args.runs,
                                                                 headers)
                results[(role, label)] = (p50, size, cpu, database)
                print(
                    f"{role:7} {label:32} {p50:7.1f} {cpu:7.1f} {database:7.1f} {size:8,} "
                    f"{zipped:7,} {status:6} {count:4}"
                )
        print()
        for role in ("viewer", "editor"):
            page, fragment = results[(role, "full page")], results[(role, "polling fragment")]
            search = results[(role, "search fragment (q=feature_01)")]
            print(
                f"{role}: full page p50 {page[0]:.1f} ms (CPU {page[2]:.1f} + database "
                f"{page[3]:.1f}; target ≤ 100), polling fragment p50 {fragment[0]:.1f} ms (CPU "
                f"{fragment[2]:.1f} + database {fragment[3]:.1f}; target ≤ 30), search p50 "
                f"{search[0]:.1f} ms (CPU {search[2]:.1f} + database {search[3]:.1f}; "
                f"target ≤ 30), fragment {fragment[1] / 1024:.1f} KiB ({fragment[1]:,} bytes)  "
                f"[{support.load()}]"
            )
        print("Audit page with 1,000,000 entries: see bench/audit.py.")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _profile(app, user_id: str, url: str, headers: dict) -> None:
    import cProfile
    import pstats

    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = user_id
    client.get(url, headers=headers)
    with app.app_context():
        timings: dict = {}

        def before(conn, cursor, statement, *a):
            conn.info["t"] = time.perf_counter()

        def after(conn, cursor, statement, *a):
            timings[statement[:90]] = (time.perf_counter() - conn.info["t"]) * 1000

        event.listen(db.engine, "before_cursor_execute", before)
        event.listen(db.engine, "after_cursor_execute", after)
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(url, headers=headers)
    profiler.disable()
    for statement, ms in timings.items():
        print(f"{ms:7.1f} ms  {' '.join(statement.split())}")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
