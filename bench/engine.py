"""The transition engine's figures, on a SQLite file database and an embedded Redis.

    .venv/bin/python bench/engine.py [--flags 10000] [--waiting 1000] [--recover 2000] [--keep DIR]
    .venv/bin/python bench/engine.py --chaos 2000    # the chaos test with 2,000 flags instead

1. Throughput: FLAGS flags are added to a published pipeline whose first stage (Development,
   ON_ENTER) enables them; one worker (`flask worker`, RQ SimpleWorker with its scheduler, a
   real process) applies the stage. Transitions/s = flags / (last - first stage application),
   read from the database; wall time from the worker's start is printed too. Target ≥ 2,000/s.
2. Lag: WAITING flags wait 5 s (WAIT_FOR) with the worker running; lag = when the stage was
   applied - when it was due. Target p99 ≤ 1.5 s.
3. Recovery: RECOVER flags are added, then Redis is FLUSHALLed before any worker saw their jobs;
   a sweeper (`flask sweeper`) alone must apply them all. Target ≤ 10 s.
4. Peak resident memory of the worker process across 1 and 2.

Flags and states are inserted in bulk (setup, not measured); runs are added through
`runs.add_flags` and rung through `jobs.transitions.ring`, as the dashboard does.
"""

import argparse
import os
import shutil
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
import redis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from jobs import transitions  # noqa: E402
from webapp import create_app, redis_conn  # noqa: E402
from webapp.clock import now  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import (  # noqa: E402
    Feature,
    FeatureState,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageAction,
    StageExecution,
)
from webapp.services import engine, projects, runs, users  # noqa: E402
from webapp.services.actors import SYSTEM, Actor  # noqa: E402


def pipeline(project_id, user_id, name, envs, stages):
    row = ReleasePipeline(project_id=project_id, name=name, status="published",
                          created_by_id=user_id, published_at=now())
    for position, (env, trigger, wait) in enumerate(stages):
        stage = PipelineStage(position=position, name=f"{name} {position + 1}",
                              environment_id=envs[env], trigger_type=trigger, wait_seconds=wait)
        stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        row.stages.append(stage)
    db.session.add(row)
    db.session.commit()
    return row.id


def bulk_flags(project_id, env_ids, prefix, count):
    engine.start_writing()  # the worker writes meanwhile: take the writer lock up front
    moment = now()
    db.session.execute(insert(Feature.__table__), [
        {"project_id": project_id, "name": f"{prefix}_{n}", "description": "",
         "value_type": "none", "default_enabled": False, "default_value": None, "tags": [],
         "created_at": moment} for n in range(count)])
    ids = list(db.session.scalars(select(Feature.id).where(
        Feature.project_id == project_id, Feature.name.like(f"{prefix}\\_%", escape="\\"))))
    db.session.execute(insert(FeatureState.__table__), [
        {"feature_id": fid, "environment_id": env, "enabled": False, "value": None,
         "updated_at": moment} for fid in ids for env in env_ids])
    db.session.commit()
    return ids


class Process:
    """A `flask` subprocess whose peak resident memory is sampled."""

    def __init__(self, command, env):
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", *command], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.peak = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        process = psutil.Process(self.popen.pid)
        while not self._stop.is_set():
            try:
                rss = process.memory_info().rss
                rss += sum(child.memory_info().rss for child in process.children(recursive=True))
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, 9)
            self.popen.wait()


def wait_for(condition, timeout):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        db.session.rollback()
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout} s")


def applied_count(pipeline_id, position=0):
    return db.session.scalar(
        select(func.count()).select_from(StageExecution)
        .join(PipelineRun, PipelineRun.id == StageExecution.run_id)
        .where(PipelineRun.pipeline_id == pipeline_id, StageExecution.position == position,
               StageExecution.applied_at.is_not(None)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--waiting", type=int, default=1_000)
    parser.add_argument("--recover", type=int, default=2_000)
    parser.add_argument("--keep", help="keep the database and Redis in this folder")
    parser.add_argument("--chaos", type=int, metavar="FLAGS",
                        help="run tests/chaos with this many flags (SIGKILLs and FLUSHALLs)")
    args = parser.parse_args()
    if args.chaos:
        env = {**os.environ, "CHAOS_FLAGS": str(args.chaos),
               "CHAOS_DEADLINE": str(max(150, args.chaos // 2))}
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "chaos",
                                "tests/chaos"], cwd=ROOT, env=env)
        print(f"chaos with {args.chaos} flags: {'passed' if code == 0 else 'FAILED'} in "
              f"{time.monotonic() - started:.0f} s")
        raise SystemExit(code)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="railyard-bench-engine-"))
    folder.mkdir(parents=True, exist_ok=True)
    server = redis_conn.start_embedded(folder)
    redis_url = redis_conn.redis_url_of(server)
    database = f"sqlite:///{folder / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": database, "REDIS_URL": redis_url,
                      "SECRET_KEY": "bench", "INSTANCE_PATH": str(folder)})
    env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": redis_url, "SECRET_KEY": "bench",
           "SWEEP_INTERVAL_SECONDS": "1"}
    try:
        with app.app_context():
            run(app, env, args, redis_url)
    finally:
        server.shutdown()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(app, env, args, redis_url):
    db.create_all()
    project = projects.create_project("Bench", SYSTEM)
    user = users.create_user("pm@bench.local", "password123", site_admin=True)
    actor = Actor.for_user(user)
    envs = {e.name: e.id for e in projects.environments_of(project.id)}
    env_ids = list(envs.values())
    on_enter = pipeline(project.id, user.id, "Throughput", envs,
                        [("Development", "ON_ENTER", None), ("Staging", "WAIT_FOR", 86400)])
    waiting = pipeline(project.id, user.id, "Lag", envs, [("Staging", "WAIT_FOR", 5)])
    recover = pipeline(project.id, user.id, "Recovery", envs,
                       [("Production", "ON_ENTER", None), ("Staging", "WAIT_FOR", 86400)])

    # 1. Throughput
    ids = bulk_flags(project.id, env_ids, "t", args.flags)
    started = time.perf_counter()
    bells = runs.add_flags(project, on_enter, ids, actor)
    added = time.perf_counter() - started
    transitions.ring(bells)
    print(f"added {len(ids)} flags in {added:.2f} s ({len(ids) / added:.0f}/s); "
          f"{len(redis_conn.queue().job_ids)} jobs queued")
    worker = Process(["worker"], env)
    wall = wait_for(lambda: applied_count(on_enter) == args.flags, 600)
    first, last = db.session.execute(
        select(func.min(StageExecution.applied_at), func.max(StageExecution.applied_at))
        .join(PipelineRun, PipelineRun.id == StageExecution.run_id)
        .where(PipelineRun.pipeline_id == on_enter, StageExecution.position == 0)).one()
    span = max((last - first).total_seconds(), 1e-3)
    print(f"throughput: {args.flags} ON_ENTER transitions in {span:.2f} s = "
          f"{args.flags / span:.0f} transitions/s (wall from worker start {wall:.2f} s, "
          "including process start)  [target >= 2000/s]")

    # 2. Lag of waiting runs (the worker keeps running, with its scheduler)
    ids = bulk_flags(project.id, env_ids, "w", args.waiting)
    bells = runs.add_flags(project, waiting, ids, actor)
    transitions.ring(bells)
    wait_for(lambda: db.session.scalar(select(func.count()).select_from(PipelineRun).where(
        PipelineRun.pipeline_id == waiting, PipelineRun.status == "launched")) == args.waiting, 60)
    visible = (now() - bells[0].due_at).total_seconds()
    lags = sorted(
        (applied - (entered + timedelta(seconds=5))).total_seconds()
        for entered, applied in db.session.execute(
            select(StageExecution.entered_at, StageExecution.applied_at)
            .join(PipelineRun, PipelineRun.id == StageExecution.run_id)
            .where(PipelineRun.pipeline_id == waiting)))
    p50 = statistics.median(lags)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(f"lag: {len(lags)} runs waiting 5 s, due together: applied (the transaction's clock) "
          f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {lags[-1]:.3f} s after due; all committed "
          f"and visible {visible:.2f} s after due (50 ms polling)  [target p99 <= 1.5 s]")
    worker.stop()
    print(f"worker peak resident memory: {worker.peak / 2**20:.0f} MiB (with its scheduler)")

    # 3. Recovery by the (always running) sweeper alone after FLUSHALL; no worker runs
    sweeper = Process(["sweeper"], env)
    ids = bulk_flags(project.id, env_ids, "r", args.recover)
    time.sleep(3)  # let the sweeper process start, as it would have long ago in production
    transitions.ring(runs.add_flags(project, recover, ids, actor))
    redis.Redis.from_url(redis_url).flushall()
    flushed = time.monotonic()
    wait_for(lambda: applied_count(recover) == args.recover, 120)
    recovered = time.monotonic() - flushed
    sweeper.stop()
    print(f"recovery: {args.recover} runs whose jobs were flushed applied by the sweeper "
          f"{recovered:.2f} s after FLUSHALL (sweep every 1 s, lease grace 2 s)  [target <= 10 s]; "
          f"sweeper peak memory {sweeper.peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
