"""Adding many flags to a published pipeline at once, on SQLite and PostgreSQL: flags/s.

    .venv/bin/python bench/add_flags.py [--databases sqlite,postgresql] [--flags 10000]
                                        [--rounds 3]

Each database is fresh (a SQLite file, or a PostgreSQL database created here and dropped after).
Each round inserts FLAGS new flags (setup, not measured), then times one call of
`flag_intake.add_flags` — what the pipeline page's "Add flags" and the API's bulk add run: the
checks (which flags can join, why not the others), the batched INSERTs of runs, stage entries
and audit entries, and the commit. Target ≥ 2,000 flags/s. Every figure is printed with the load
average (the machine is shared; several rounds show the spread) and the CPU seconds used by
the bench process and by the PostgreSQL backend serving it (SQLite runs in the bench process):
flags per CPU second is the figure that holds still on a machine loaded beyond its cores.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
import support  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import (  # noqa: E402
    PipelineRun,
)
from webapp.services.actors import SYSTEM, Actor  # noqa: E402
from webapp.services.platform import projects, users  # noqa: E402
from webapp.services.runs import flag_intake  # noqa: E402


def backend_cpu(kind: str, since: float = 0.0) -> float:
    """CPU seconds (user + system) the PostgreSQL backend serving this session has used, minus
    `since` (0 on SQLite, which runs in the bench process). On a machine loaded beyond its
    cores, flags per CPU second hold still where flags per second do not."""
    if kind != "postgresql":
        return 0.0
    pid = db.session.scalar(text("SELECT pg_backend_pid()"))
    db.session.rollback()
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:  # the server runs elsewhere: its CPU is not ours to read
        return 0.0
    return times.user + times.system - since


def run(kind: str, count: int, rounds: int) -> None:
    db.create_all()
    project = projects.create_project("Bench", SYSTEM)
    user = users.create_user("pm@bench.local", "password123", site_admin=True)
    actor = Actor.for_user(user)
    envs = {e.name: e.id for e in projects.environments_of(project.id)}
    pipeline_id = support.published_pipeline(project.id, user.id, "Bulk", envs, [
        ("Development", "ON_ENTER", None), ("Staging", "WAIT_FOR", 86400),
        ("Production", "ON_ENTER", None)])
    rates = []
    for number in range(1, rounds + 1):
        ids = support.bulk_flags(project.id, list(envs.values()), f"r{number}", count)
        db.session.rollback()
        server = backend_cpu(kind)
        started, cpu = time.perf_counter(), time.process_time()
        report = flag_intake.add_flags(project, pipeline_id, ids, actor)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        server = backend_cpu(kind, server)
        assert len(report.added) == count, report.refused[:3]
        rates.append(count / took)
        used = cpu + server
        print(f"{kind}: round {number}: added {count} flags in {took:.2f} s = "
              f"{count / took:.0f} flags/s (one call, committed)  [target >= 2000/s]; CPU used: "
              f"bench {cpu:.2f} s + database server {server:.2f} s = {count / used:.0f} flags "
              f"per CPU second  [{support.load()}]", flush=True)
    in_flight = db.session.scalar(select(func.count()).select_from(PipelineRun)
                                  .where(PipelineRun.ended_at.is_(None)))
    print(f"{kind}: median {statistics.median(rates):.0f} flags/s, min {min(rates):.0f}, "
          f"max {max(rates):.0f} over {rounds} rounds; {in_flight} flags in flight at the end  "
          f"[{support.load()}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for kind, database, folder in support.databases(args.databases, "railyard_bench_add"):
        app = create_app({"SQLALCHEMY_DATABASE_URI": database, "SECRET_KEY": "bench",
                          "INSTANCE_PATH": str(folder), "REDIS_URL": "redis://127.0.0.1:1/0"})
        with app.app_context():
            run(kind, args.flags, args.rounds)
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
