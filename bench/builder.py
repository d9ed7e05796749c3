"""Server time of each HTMX edit in the pipeline builder, on a 30-stage pipeline.

    .venv/bin/python bench/builder.py [--runs 60] [--keep DIR]

Builds a project (three environments, a few segments) and a draft pipeline of 29 stages with
two actions each, through the services, on a SQLite file database. Then, signed in as an editor
through the Flask test client with htmx headers, times each builder edit the way the page sends
it: add a stage (the 30th; removed again, timed too), rename, change the trigger, add an action
(removed again), move a stage. Each answer is the whole re-rendered builder block (30 stages).
"Server" is the time from the start to the end of the request inside Flask (before_request to
after_request: routing, the service call with its commit, the render); "client" adds the test
client's round trip. Target: p95 server time under 50 ms.
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import g  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.services.actors import SYSTEM  # noqa: E402
from webapp.services.pipelines import builder, catalog
from webapp.services.platform import projects, segments, users

TOGGLE = {"action_type": "TOGGLE_FEATURE", "enabled": "true"}


def build(folder: Path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}",
                      "REDIS_URL": "redis://unused", "SECRET_KEY": "bench",
                      "INSTANCE_PATH": str(folder), "TESTING": True})
    with app.app_context():
        db.create_all()
        project = projects.create_project("Bench", SYSTEM)
        editor = users.create_user("editor@bench.local", "password123")
        projects.add_member(project, editor, "editor", SYSTEM)
        rules = [{"type": "ALL", "rules": [],
                  "conditions": [{"property": "plan", "operator": "EQUAL", "value": "pro"}]}]
        segment_ids = [segments.create_segment(project, f"Segment {n}", rules, SYSTEM).id
                       for n in range(8)]
        envs = [e.id for e in projects.environments_of(project.id)]
        pipeline = builder.create_pipeline(project, "Thirty stages", SYSTEM)
        for n in range(29):
            stage = builder.add_stage(pipeline, pipeline.version, SYSTEM, name=f"Stage {n + 1}",
                                        environment_id=envs[n % 3])
            pipeline = catalog.get_pipeline(project.id, pipeline.id)
            builder.add_action(pipeline, pipeline.version, stage.id, TOGGLE, SYSTEM)
            builder.add_action(pipeline, pipeline.version, stage.id, {
                "action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": "true",
                "segment_id": str(segment_ids[n % len(segment_ids)])}, SYSTEM)
            pipeline = catalog.get_pipeline(project.id, pipeline.id)
        return app, project.id, pipeline.id, editor.id


class Timer:
    """Server time per request, from Flask's own hooks: wall clock, and the CPU time of the
    serving thread (which other busy processes on the machine do not stretch as much)."""

    def __init__(self, app):
        self.last = self.last_cpu = 0.0
        app.before_request(self._start)
        app.after_request(self._stop)

    def _start(self):
        g.bench_started = (time.perf_counter(), time.thread_time())

    def _stop(self, response):
        wall, cpu = g.bench_started
        self.last = time.perf_counter() - wall
        self.last_cpu = time.thread_time() - cpu
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--keep", help="build the database in this folder and keep it")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="railyard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        run(folder, args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, runs: int) -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; calibration "
          f"{calibrate():.0f} ms for sum(range(10**7))")
    started = time.perf_counter()
    app, project_id, pipeline_id, editor_id = build(folder)
    print(f"built a 29-stage draft (58 actions) in {time.perf_counter() - started:.1f} s "
          f"on {folder / 'bench.db'}")
    timer = Timer(app)
    client = app.test_client()
    client.environ_base["HTTP_HX_REQUEST"] = "true"
    with client.session_transaction() as session:
        session["_user_id"] = str(editor_id)
        session["_fresh"] = True
    base = f"/projects/{project_id}/pipelines/{pipeline_id}"
    page = client.get(base).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    headers = {"X-CSRFToken": token}
    state = {"version": int(re.search(r'name="version" value="(\d+)"', page).group(1))}
    with app.app_context():
        pipeline = catalog.get_pipeline(project_id, pipeline_id)
        stage_ids = [s.id for s in pipeline.stages]
    server: dict[str, list[float]] = {}
    server_cpu: dict[str, list[float]] = {}
    client_side: dict[str, list[float]] = {}

    def post(label: str, path: str, **data) -> str:
        data["version"] = state["version"]
        t0 = time.perf_counter()
        response = client.post(base + path, data=data, headers=headers)
        elapsed = time.perf_counter() - t0
        body = response.get_data(as_text=True)
        if response.status_code != 200:
            raise SystemExit(f"{label}: HTTP {response.status_code}\n{body[:2000]}")
        state["version"] = int(re.search(r'name="version" value="(\d+)"', body).group(1))
        server.setdefault(label, []).append(timer.last)
        server_cpu.setdefault(label, []).append(timer.last_cpu)
        client_side.setdefault(label, []).append(elapsed)
        return body

    middle = stage_ids[14]
    for n in range(runs):
        body = post("add stage (30th)", "/stages", name=f"Extra {n}", environment_id="")
        extra = max(int(i) for i in re.findall(r'id="stage-(\d+)"', body))
        if body.count('class="stage"') != 30:
            raise SystemExit("the added stage is not the 30th")
        post("remove stage", f"/stages/{extra}/delete")
        post("rename stage", f"/stages/{middle}", name=f"Middle {n}")
        trigger = ({"trigger_type": "WAIT_FOR", "wait_amount": "2", "wait_unit": "hours"}
                   if n % 2 == 0 else {"trigger_type": "ON_ENTER"})
        post("change trigger", f"/stages/{middle}", **trigger)
        body = post("add action", f"/stages/{middle}/actions", action_type="PHASED_ROLLOUT",
                    enabled="true", rollout_initial="10", rollout_step="15", rollout_every="3",
                    rollout_unit="hours", value="")
        action = max(int(i) for i in re.findall(r'id="action-(\d+)"', body))
        post("edit action", f"/actions/{action}", action_type="PHASED_ROLLOUT",
             enabled="true", rollout_initial="20", rollout_step="20", rollout_every="1",
             rollout_unit="hours", value="")
        post("remove action", f"/actions/{action}/delete")
        post("move stage", f"/stages/{stage_ids[9]}/move", direction="down" if n % 2 == 0 else "up")

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000

    print(f"\n{runs} runs of each edit; milliseconds; the builder re-rendered with 30 stages\n")
    columns = ("server p50", "server p95", "cpu p50", "cpu p95", "client p50", "client p95")
    print(f"{'edit':<18} " + " ".join(f"{c:>10}" for c in columns))
    worst = 0.0
    for label, values in server.items():
        worst = max(worst, pct(values, .95))
        figures = (pct(values, .5), pct(values, .95), pct(server_cpu[label], .5),
                   pct(server_cpu[label], .95), pct(client_side[label], .5),
                   pct(client_side[label], .95))
        print(f"{label:<18} " + " ".join(f"{f:>10.1f}" for f in figures))
    every = [v for values in server.values() for v in values]
    every_cpu = [v for values in server_cpu.values() for v in values]
    print(f"\nall edits: server p50 {pct(every, .5):.1f} ms, p95 {pct(every, .95):.1f} ms, "
          f"mean {statistics.fmean(every) * 1000:.1f} ms; server CPU p50 "
          f"{pct(every_cpu, .5):.1f} ms, p95 {pct(every_cpu, .95):.1f} ms")
    verdict = "met" if worst < 50 else "NOT met"
    print(f"target p95 < 50 ms: {verdict} (worst edit p95 {worst:.1f} ms)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end, "
          f"calibration {calibrate():.0f} ms for sum(range(10**7))")


def calibrate() -> float:
    """How busy the machine is: other processes stretch every figure above by the same factor."""
    started = time.perf_counter()
    sum(range(10**7))
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
