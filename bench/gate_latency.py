"""Time from a failing metric to the automatic rollback applied, against a real Prometheus.

    .venv/bin/python bench/gate_latency.py [--runs 5] [--interval 1]

Starts Debian's Prometheus (scrape and evaluation every 1 s) scraping a small exporter this
script controls, a SQLite file database, and a guarded stage (PROMETHEUS check every
`--interval` seconds, one failure trips it, roll back). The engine is driven the way a worker's
drain job drives it: advance what is due, sleep until the next due time. For each run the
exporter's gauge turns bad at T0; the figure is the wall time from T0 to the commit of the
rollback (the run's `ended_at` moment as read back). Goal: under the check interval + 2 s.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402

from tests.gates.conftest import Exporter, Prometheus  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.clock import now  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import PipelineRun, PipelineStage, ReleasePipeline, StageAction  # noqa: E402
from webapp.models.health import ProjectIntegration, StageHealthCheck  # noqa: E402
from webapp.services.actors import SYSTEM, Actor  # noqa: E402
from webapp.services.platform import flags, projects, users
from webapp.services.runs import controls, sweep


def drive_until(run_id: int, done, limit: float = 30.0) -> None:
    """A worker's drain loop: advance what is due, sleep until the next due moment."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sweep.drain()
        db.session.rollback()
        if done(db.session.get(PipelineRun, run_id)):
            return
        upcoming = sweep.next_due_at()
        pause = 0.05 if upcoming is None else (upcoming - now()).total_seconds()
        time.sleep(min(0.5, max(0.005, pause)))
    raise SystemExit("timed out")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    exporter = Exporter()
    (folder / "prom").mkdir()
    prometheus = Prometheus(folder / "prom", exporter.port)
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}",
                      "REDIS_URL": "redis://unused", "SECRET_KEY": "bench",
                      "INSTANCE_PATH": str(folder), "TESTING": True})
    figures = []
    try:
        with app.app_context():
            db.create_all()
            user = users.create_user("bench@example.com", "password123", site_admin=True)
            project = projects.create_project("Bench", SYSTEM, projects.DEFAULT_ENVIRONMENTS)
            envs = projects.environments_of(project.id)
            db.session.add(ProjectIntegration(project_id=project.id,
                                              prometheus_url=prometheus.url,
                                              prometheus_auth_header=""))
            pipeline = ReleasePipeline(project_id=project.id, name="Guarded", status="published",
                                       published_at=now(), created_by_id=user.id)
            stage = PipelineStage(position=0, name="Dev", environment_id=envs[0].id,
                                  trigger_type="WAIT_FOR", wait_seconds=3600,
                                  on_unhealthy="ROLL_BACK")
            stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE",
                                             enabled=True))
            stage.checks.append(StageHealthCheck(
                position=0, kind="PROMETHEUS", name="errors",
                query='max(checkout_error_ratio{flag="guarded_flag"})', comparison="<",
                threshold=0.05, interval_seconds=args.interval, failures_to_trip=1))
            pipeline.stages.append(stage)
            db.session.add(pipeline)
            db.session.commit()
            for number in range(args.runs):
                exporter.value = 0.01
                prometheus.wait_for_value("checkout_error_ratio", 0.01)
                feature = flags.create_feature(project, f"flag_{number}", SYSTEM)
                controls.add_flag(project, pipeline.id, feature.id, Actor.for_user(user))
                run_id = db.session.scalar(select(PipelineRun.id).where(
                    PipelineRun.feature_id == feature.id))
                # Watching, with a healthy answer behind it.
                drive_until(run_id, lambda r: r.status == "watching" and r.version >= 4)
                started = time.time()
                exporter.value = 0.5
                drive_until(run_id, lambda r: r.status == "rolled_back")
                run = db.session.get(PipelineRun, run_id)
                seconds = run.ended_at.timestamp() - started
                figures.append(seconds)
                print(f"run {number + 1}: failing value -> rollback applied in {seconds:.2f} s")
    finally:
        prometheus.stop()
        exporter.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"check interval {args.interval} s, Prometheus scrape 1 s: median "
          f"{statistics.median(figures):.2f} s, max {max(figures):.2f} s over {len(figures)} "
          f"runs (goal < {args.interval + 2} s)")


if __name__ == "__main__":
    main()
