"""End to end: a flag added through the admin API, seen moving by SDK reads, under `make run`.

    .venv/bin/python bench/e2e.py [--databases sqlite,postgresql] [--single 10] [--flags 1000]
                                  [--wait 3] [--port 5108]

`flask run-all` is started as `make run` starts it (its defaults: gunicorn web, one worker with
RQ's scheduler, the sweeper every 2 s, embedded Redis, migrations, the demo data), on a fresh
SQLite file or a PostgreSQL database created here and dropped after. Through the admin API
(an organisation key made with `flask api-keys create`): a pipeline Development (ON_ENTER,
enable) → Staging (WAIT_FOR, enable) → Production (ON_ENTER, enable) is created and published.
The API takes waits in whole minutes, so the Staging wait is set to WAIT seconds in the
database before publishing (the engine stores seconds).

1. Single flags, one after the other: from just before `POST add-feature/` until an SDK read
   (`GET /api/v1/flags/?feature=`, polled every 10 ms) shows it: Development's ON_ENTER
   (target ≤ 0.5 s); Staging's WAIT_FOR lateness = seen - (entered Staging + WAIT) (target
   ≤ 1.5 s); Production's ON_ENTER after Staging was seen (target ≤ 0.5 s).
2. FLAGS flags added one per request as fast as the API takes them, while Staging's and
   Production's flags documents are read in rounds (20 ms apart, from before the first add;
   the round's duration is printed, it is the resolution): WAIT_FOR lateness p50/p99/max over
   all flags (target p99 ≤ 1.5 s), with the same lateness in the database for comparison, and
   the further ON_ENTER (target ≤ 0.5 s). CPU per flag, which holds still on a loaded machine
   where latencies do not: the worker's (with its scheduler) and the web server's (the add and
   the reads watching it), from the first add until the last flag launched.

Due times are read from the database (the engine's clock is this machine's clock); every
figure is printed with the load average; memory (RSS, PSS) per process at the end.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
import support  # noqa: E402
from sqlalchemy import create_engine, insert, select, update  # noqa: E402

from webapp.models import (  # noqa: E402
    Environment,
    Feature,
    FeatureState,
    PipelineRun,
    PipelineStage,
    Project,
    StageExecution,
)


class Api:
    def __init__(self, base: str, key: str):
        self.base, self.key = base, key

    def call(self, method: str, path: str, body: dict | None = None, env_key: str | None = None):
        headers = {"Content-Type": "application/json"}
        if env_key:
            headers["X-Environment-Key"] = env_key
        else:
            headers["Authorization"] = f"Api-Key {self.key}"
        request = urllib.request.Request(
            self.base + path, method=method, headers=headers,
            data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")


def start(url: str, folder: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "PORT": str(port), "ADMIN_PASSWORD": "bench-pw-1",
           "SECRET_KEY": "bench"}
    env.pop("REDIS_URL", None)
    log = open(folder / "run-all.log", "w")  # noqa: SIM115 (kept open for the child)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run-all"], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    support.wait_http(f"http://127.0.0.1:{port}/api/v1/flags/", timeout=120)
    return process


def api_key(url: str) -> str:
    output = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "api-keys", "create", "--name", "bench"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench"},
        capture_output=True, text=True, check=True).stdout
    return output.strip().splitlines()[-1]


def setup(engine, api: Api, flags: int, wait: int) -> dict:
    with engine.begin() as conn:
        project_id = conn.scalar(select(Project.id).where(Project.name == "Demo"))
        envs = {name: (env_id, key) for env_id, name, key in conn.execute(
            select(Environment.id, Environment.name, Environment.client_key)
            .where(Environment.project_id == project_id))}
        moment = datetime.now(UTC)
        conn.execute(insert(Feature.__table__), [
            {"project_id": project_id, "name": f"e2e_{n}", "description": "", "value_type": "none",
             "default_enabled": False, "default_value": None, "tags": [], "created_at": moment}
            for n in range(flags)])
        ids = dict(conn.execute(select(Feature.name, Feature.id).where(
            Feature.project_id == project_id, Feature.name.like("e2e\\_%", escape="\\"))).all())
        conn.execute(insert(FeatureState.__table__), [
            {"feature_id": fid, "environment_id": env_id, "enabled": False, "value": None,
             "updated_at": moment} for fid in ids.values() for env_id, _key in envs.values()])
    stage = {"trigger": {"trigger_type": "ON_ENTER"},
             "actions": [{"action_type": "TOGGLE_FEATURE", "action_body": {"enabled": True}}]}
    pipeline = api.call("POST", f"/projects/{project_id}/release-pipelines/", {
        "name": "End to end", "stages": [
            {**stage, "name": "Dev", "environment": envs["Development"][0]},
            {**stage, "name": "Staging", "environment": envs["Staging"][0],
             "trigger": {"trigger_type": "WAIT_FOR", "trigger_body": {"wait_for": "0 00:01:00"}}},
            {**stage, "name": "Prod", "environment": envs["Production"][0]},
        ]})
    with engine.begin() as conn:
        conn.execute(update(PipelineStage).where(PipelineStage.pipeline_id == pipeline["id"],
                                                 PipelineStage.position == 1)
                     .values(wait_seconds=wait))
    api.call("POST", f"/projects/{project_id}/release-pipelines/{pipeline['id']}/"
             "publish-pipeline/", {})
    return {"project": project_id, "pipeline": pipeline["id"], "envs": envs, "ids": ids}


def staging_due(engine, feature_id: int, wait: int) -> float:
    """When the flag's Staging stage fell due (epoch seconds), from the database."""
    with engine.connect() as conn:
        entered = conn.scalar(
            select(StageExecution.entered_at).join(PipelineRun)
            .where(PipelineRun.feature_id == feature_id, StageExecution.position == 1))
    return entered.replace(tzinfo=UTC).timestamp() + wait


def staging_applied(engine, feature_ids: list[int], wait: int) -> list[float]:
    """Per flag, how long after due its Staging stage was applied, by the engine's own clock
    (`applied_at` is when its transaction began; its commit came a little later)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(StageExecution.entered_at, StageExecution.applied_at).join(PipelineRun)
            .where(PipelineRun.feature_id.in_(feature_ids), StageExecution.position == 1)).all()
    return [(applied - entered).total_seconds() - wait for entered, applied in rows]


def enabled_in(api: Api, env_key: str, name: str | None = None) -> dict[str, bool]:
    path = "/flags/" + (f"?feature={name}" if name else "")
    answer = api.call("GET", path, env_key=env_key)
    items = answer if isinstance(answer, list) else [answer]
    return {item["feature"]["name"]: item["enabled"] for item in items}


def poll_one(api: Api, env_key: str, name: str, timeout: float = 60) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if enabled_in(api, env_key, name)[name]:
            return time.time()
        time.sleep(0.01)
    raise SystemExit(f"{name} never showed as enabled")


def single(engine, api: Api, ctx: dict, count: int, wait: int, label: str) -> None:
    dev, staging, prod = (ctx["envs"][n][1] for n in ("Development", "Staging", "Production"))
    rows = []
    for n in range(count):
        name = f"e2e_{n}"
        started = time.time()
        api.call("POST", f"/projects/{ctx['project']}/release-pipelines/{ctx['pipeline']}/"
                 "add-feature/", {"feature_id": ctx["ids"][name]})
        seen_dev = poll_one(api, dev, name)
        seen_staging = poll_one(api, staging, name)
        late = seen_staging - staging_due(engine, ctx["ids"][name], wait)
        seen_prod = poll_one(api, prod, name)
        rows.append((seen_dev - started, late, seen_prod - seen_staging))
        print(f"{label} flag {n}: Development ON_ENTER seen {seen_dev - started:.3f} s after "
              f"the add; Staging WAIT_FOR seen {late:.3f} s after due; Production ON_ENTER seen "
              f"{seen_prod - seen_staging:.3f} s after Staging  [{support.load()}]", flush=True)
    for index, what, target in ((0, "ON_ENTER after the add", 0.5),
                                (1, "WAIT_FOR after due", 1.5),
                                (2, "further ON_ENTER", 0.5)):
        values = [row[index] for row in rows]
        print(f"{label} single flags ({count}): {what}: median {statistics.median(values):.3f} s, "
              f"max {max(values):.3f} s  [target ≤ {target} s]  [{support.load()}]")


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds used so far by run-all's web server and its worker, each with the processes
    it started (gunicorn's workers, RQ's forked scheduler)."""
    found = {}
    for child in psutil.Process(root).children():
        words = " ".join(child.cmdline())
        role = "web" if "wsgi:app" in words else words.rsplit(" ", 1)[-1]
        found[role] = support.tree_cpu(child.pid)
    return found


class Watcher(threading.Thread):
    """Reads Staging's and Production's flags documents, round after round (20 ms apart), from
    before the first add until every flag reached Production: when each flag was first seen
    enabled in each (an upper bound: the time the read that showed it returned)."""

    def __init__(self, api: Api, staging: str, prod: str, names: set[str], deadline: float):
        super().__init__(daemon=True)
        self.api, self.staging, self.prod, self.names = api, staging, prod, names
        self.deadline = deadline
        self.seen_staging: dict[str, float] = {}
        self.seen_prod: dict[str, float] = {}
        self.periods: list[float] = []

    def run(self) -> None:
        while len(self.seen_prod) < len(self.names) and time.time() < self.deadline:
            began = time.time()
            for env_key, seen in ((self.staging, self.seen_staging), (self.prod, self.seen_prod)):
                answer = enabled_in(self.api, env_key)
                moment = time.time()
                for name, enabled in answer.items():
                    if enabled and name in self.names and name not in seen:
                        seen[name] = moment
                        # Staging and Production may both have moved between the two reads:
                        # seen in Production is seen done in Staging too (an upper bound).
                        self.seen_staging.setdefault(name, moment)
            self.periods.append(time.time() - began)
            time.sleep(0.02)


def many(engine, api: Api, ctx: dict, first: int, count: int, wait: int, label: str,
         root: int) -> None:
    staging, prod = ctx["envs"]["Staging"][1], ctx["envs"]["Production"][1]
    names = [f"e2e_{n}" for n in range(first, first + count)]
    cpu_before = cpu_by_role(root)
    # Watching starts before the first add: a flag whose wait ends while others are still
    # being added is seen then, not when the adds are over.
    watcher = Watcher(api, staging, prod, set(names), time.time() + 3 * count + wait + 120)
    watcher.start()
    started = time.time()
    for name in names:
        api.call("POST", f"/projects/{ctx['project']}/release-pipelines/{ctx['pipeline']}/"
                 "add-feature/", {"feature_id": ctx["ids"][name]})
    added = time.time() - started
    watcher.join()
    if len(watcher.seen_prod) < count:
        raise SystemExit(f"only {len(watcher.seen_prod)} of {count} flags reached Production")
    cpu_after = cpu_by_role(root)
    worker_ms = (cpu_after["worker"] - cpu_before["worker"]) / count * 1000
    web_ms = (cpu_after["web"] - cpu_before["web"]) / count * 1000
    dues = {n: staging_due(engine, ctx["ids"][n], wait) for n in names}
    lates = [watcher.seen_staging[n] - dues[n] for n in names]
    further = [watcher.seen_prod[n] - watcher.seen_staging[n] for n in names]
    applied = staging_applied(engine, [ctx["ids"][n] for n in names], wait)
    print(f"{label} {count} flags added one per API request in {added:.1f} s "
          f"({count / added:.0f}/s); WAIT_FOR {wait} s: seen after due p50 "
          f"{statistics.median(lates):.3f} s, p99 {support.percentile(lates, 0.99):.3f} s, max "
          f"{max(lates):.3f} s  [target p99 ≤ 1.5 s] (applied in the database after due: p50 "
          f"{statistics.median(applied):.3f} s, p99 {support.percentile(applied, 0.99):.3f} s); "
          f"further ON_ENTER seen after Staging p50 {statistics.median(further):.3f} s, p99 "
          f"{support.percentile(further, 0.99):.3f} s [target ≤ 0.5 s]  (resolution: one polling "
          f"round took {statistics.median(watcher.periods):.3f} s median, "
          f"{max(watcher.periods):.3f} s max); CPU per flag: worker + scheduler {worker_ms:.1f} "
          f"ms for its 3 transitions, web {web_ms:.1f} ms for its add and the reads watching it  "
          f"[{support.load()}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--single", type=int, default=10)
    parser.add_argument("--flags", type=int, default=1000)
    parser.add_argument("--wait", type=int, default=3)
    parser.add_argument("--port", type=int, default=5108)
    args = parser.parse_args()
    for kind, url, folder in support.databases(args.databases, "railyard_bench_e2e"):
        run(kind, url, folder, args)


def run(kind: str, url: str, folder: Path, args) -> None:
    process = start(url, folder, args.port)
    engine = create_engine(url)
    try:
        api = Api(f"http://127.0.0.1:{args.port}/api/v1", api_key(url))
        ctx = setup(engine, api, args.single + args.flags, args.wait)
        print(f"{kind}: flask run-all (gunicorn web, worker + scheduler, sweeper, embedded "
              f"Redis), {support.load()}", flush=True)
        single(engine, api, ctx, args.single, args.wait, kind)
        if args.flags:
            many(engine, api, ctx, args.single, args.flags, args.wait, kind, process.pid)
        print(f"{kind} memory: {support.format_memory(support.tree_memory(process.pid))}")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        engine.dispose()


if __name__ == "__main__":
    main()
