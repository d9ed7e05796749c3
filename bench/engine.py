"""The transition engine's figures, committed work only, on SQLite and PostgreSQL.

    .venv/bin/python bench/engine.py [--databases sqlite,postgresql] [--flags 10000]
                                     [--waiting 1000] [--recover 2000] [--keep DIR]
    .venv/bin/python bench/engine.py --chaos 2000    # the chaos test with 2,000 flags instead

Each database is fresh (a SQLite file, or a PostgreSQL database created here and dropped
after), with an embedded Redis. What counts is what another connection sees committed: a
watcher on its own connection polls every 20 ms which runs' stage executions are applied, and
each run's time is when the watcher first saw it (an upper bound, at most one poll late).

1. Adding: FLAGS flags are added to a published pipeline through `controls.add_flags` (one unit of
   work, as the API and the dashboard do): flags/s. Target ≥ 2,000/s.
2. Throughput: one worker (`flask worker`, RQ SimpleWorker with its scheduler, a real process)
   is started and warm before the bells ring; committed transitions/s = FLAGS / (last run seen
   applied - the ring). Target ≥ 2,000/s. The worker's CPU per transition is printed too: on a
   loaded machine it holds still where the rate does not.
3. Lag: WAITING flags wait 5 s (WAIT_FOR) with the worker running; lag = seen applied - due,
   per run. Target p99 ≤ 1.5 s.
4. Memory of the worker and its forked scheduler: peak RSS and peak PSS of each, and the peak
   of their PSS sum (PSS shares the pages they have in common, RSS counts them twice). Target
   ≤ 150 MiB PSS together.
5. Recovery: RECOVER flags are added, then Redis is FLUSHALLed before any worker saw their jobs;
   the sweeper (`flask sweeper`, its default interval) alone must apply them all. Target ≤ 10 s.

Every figure is printed with the load average. Flags and states are inserted in bulk (setup,
not measured); bells are rung through `jobs.transitions.ring`, as the dashboard does.
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
import redis  # noqa: E402
import support  # noqa: E402
from sqlalchemy import create_engine, select  # noqa: E402

from jobs import transitions  # noqa: E402
from webapp import create_app, redis_conn  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import (  # noqa: E402
    PipelineRun,
    StageExecution,
)
from webapp.services.actors import SYSTEM, Actor  # noqa: E402
from webapp.services.platform import projects, users  # noqa: E402
from webapp.services.runs import controls  # noqa: E402


class Process:
    """A `flask` subprocess; peak RSS and PSS of it and of its children are sampled."""

    started: list["Process"] = []  # stopped by main() whatever happens (a failed wait exits)

    def __init__(self, command, env):
        Process.started.append(self)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", *command], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.peaks: dict[int, dict[str, float]] = {}
        self.peak_pss_sum = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.is_set():
            try:
                rows = support.tree_memory(self.popen.pid)
            except psutil.Error:
                return
            for pid, _role, memory in rows:
                peak = self.peaks.setdefault(pid, {"rss": 0.0, "pss": 0.0})
                peak["rss"] = max(peak["rss"], memory["rss"])
                peak["pss"] = max(peak["pss"], memory["pss"])
            self.peak_pss_sum = max(self.peak_pss_sum, sum(m["pss"] for _p, _r, m in rows))
            time.sleep(0.25)

    def memory_line(self) -> str:
        parts = [f"pid {pid}{'  (the process)' if pid == self.popen.pid else ' (its child)'}: peak "
                 f"RSS {m['rss']:.0f} MiB, peak PSS {m['pss']:.0f} MiB"
                 for pid, m in self.peaks.items()]
        return "; ".join(parts) + f"; peak PSS together {self.peak_pss_sum:.0f} MiB"

    def stop(self):
        self._stop.set()
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, 9)
            self.popen.wait()


class Watcher:
    """Which runs' stage executions (at `position` of `pipeline_id`) another connection sees
    applied, and when it first saw each (polled every 20 ms)."""

    def __init__(self, url, pipeline_id, position=0):
        self._engine = create_engine(url)
        self._query = (
            select(StageExecution.run_id)
            .join(PipelineRun, PipelineRun.id == StageExecution.run_id)
            .where(PipelineRun.pipeline_id == pipeline_id, StageExecution.position == position,
                   StageExecution.applied_at.is_not(None)))
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            with self._engine.connect() as conn:
                ids = conn.scalars(self._query).all()
            moment = time.time()
            for run_id in ids:
                self.seen.setdefault(run_id, moment)
            time.sleep(0.02)

    def wait(self, count, timeout):
        deadline = time.time() + timeout
        while len(self.seen) < count:
            if time.time() > deadline:
                raise SystemExit(f"only {len(self.seen)} of {count} seen applied in {timeout} s")
            time.sleep(0.05)
        self._stop.set()
        self._thread.join()
        self._engine.dispose()
        return self.seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--waiting", type=int, default=1_000)
    parser.add_argument("--recover", type=int, default=2_000)
    parser.add_argument("--keep", help="keep the SQLite database and Redis in this folder")
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
    for kind, database, folder in support.databases(args.databases, "railyard_bench_engine",
                                                     keep=args.keep):
        server = redis_conn.start_embedded(folder)
        redis_url = redis_conn.redis_url_of(server)
        app = create_app({"SQLALCHEMY_DATABASE_URI": database, "REDIS_URL": redis_url,
                          "SECRET_KEY": "bench", "INSTANCE_PATH": str(folder)})
        env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": redis_url,
               "SECRET_KEY": "bench"}
        env.pop("SWEEP_INTERVAL_SECONDS", None)  # the default, as `make run` has it
        try:
            with app.app_context():
                run(kind, database, env, args, redis_url)
                db.session.remove()
                db.engine.dispose()
        finally:
            for process in Process.started:
                process.stop()
            Process.started.clear()
            server.shutdown()


def run(kind, url, env, args, redis_url):
    db.create_all()
    project = projects.create_project("Bench", SYSTEM)
    user = users.create_user("pm@bench.local", "password123", site_admin=True)
    actor = Actor.for_user(user)
    envs = {e.name: e.id for e in projects.environments_of(project.id)}
    env_ids = list(envs.values())
    on_enter = support.published_pipeline(
        project.id, user.id, "Throughput", envs,
        [("Development", "ON_ENTER", None), ("Staging", "WAIT_FOR", 86400)])
    waiting = support.published_pipeline(project.id, user.id, "Lag", envs,
                                         [("Staging", "WAIT_FOR", 5)])
    recover = support.published_pipeline(
        project.id, user.id, "Recovery", envs,
        [("Production", "ON_ENTER", None), ("Staging", "WAIT_FOR", 86400)])

    worker = Process(["worker"], env)
    time.sleep(3)  # warm: started and listening long before the bells ring, as in production

    # 1. Adding, 2. throughput
    ids = support.bulk_flags(project.id, env_ids, "t", args.flags)
    started = time.perf_counter()
    bells = controls.add_flags(project, on_enter, ids, actor)
    added = time.perf_counter() - started
    print(f"{kind}: added {len(ids)} flags to a pipeline in {added:.2f} s = "
          f"{len(ids) / added:.0f} flags/s (one unit of work, committed)  [target >= 2000/s]  "
          f"[{support.load()}]", flush=True)
    watcher = Watcher(url, on_enter)
    cpu_before = support.tree_cpu(worker.popen.pid)
    rung = time.time()
    transitions.ring(bells)
    seen = watcher.wait(args.flags, 600)
    cpu = support.tree_cpu(worker.popen.pid) - cpu_before
    last = max(seen.values())
    latencies = [moment - rung for moment in seen.values()]
    print(f"{kind}: throughput: {args.flags} ON_ENTER transitions committed and seen from "
          f"another connection {last - rung:.2f} s after the ring = "
          f"{args.flags / (last - rung):.0f} transitions/s (one warm worker); per run, seen "
          f"after the ring p50 {statistics.median(latencies):.2f} s, p99 "
          f"{support.percentile(latencies, 0.99):.2f} s; worker CPU "
          f"{cpu / args.flags * 1e6:.0f} us per transition  [target >= 2000/s]  "
          f"[{support.load()}]", flush=True)

    # 3. Lag of waiting runs (the worker keeps running, with its scheduler)
    ids = support.bulk_flags(project.id, env_ids, "w", args.waiting)
    watcher = Watcher(url, waiting)
    bells = controls.add_flags(project, waiting, ids, actor)
    transitions.ring(bells)
    seen = watcher.wait(args.waiting, 120)
    due = {run_id: entered.timestamp() + 5 for run_id, entered in db.session.execute(
        select(StageExecution.run_id, StageExecution.entered_at)
        .join(PipelineRun, PipelineRun.id == StageExecution.run_id)
        .where(PipelineRun.pipeline_id == waiting, StageExecution.position == 0))}
    lags = [seen[run_id] - due[run_id] for run_id in seen]
    print(f"{kind}: lag: {len(lags)} runs waiting 5 s (due within the same second), seen "
          f"applied from another connection p50 {statistics.median(lags):.3f} s, p99 "
          f"{support.percentile(lags, 0.99):.3f} s, max {max(lags):.3f} s after due "
          f"(20 ms polling)  [target p99 <= 1.5 s]  [{support.load()}]", flush=True)
    worker.stop()
    print(f"{kind}: worker memory across 2 and 3: {worker.memory_line()}  "
          f"[target <= 150 MiB PSS together]")

    # 4. Recovery by the (always running) sweeper alone after FLUSHALL; no worker runs
    sweeper = Process(["sweeper"], env)
    ids = support.bulk_flags(project.id, env_ids, "r", args.recover)
    time.sleep(3)  # let the sweeper process start, as it would have long ago in production
    watcher = Watcher(url, recover)
    transitions.ring(controls.add_flags(project, recover, ids, actor))
    redis.Redis.from_url(redis_url).flushall()
    flushed = time.time()
    seen = watcher.wait(args.recover, 120)
    sweeper.stop()
    print(f"{kind}: recovery: {args.recover} runs whose jobs were flushed applied by the sweeper "
          f"(default interval) and seen {max(seen.values()) - flushed:.2f} s after FLUSHALL  "
          f"[target <= 10 s]; sweeper: {sweeper.memory_line()}  [{support.load()}]",
          flush=True)


if __name__ == "__main__":
    main()
