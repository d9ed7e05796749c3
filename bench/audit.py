"""Audit log page and CSV export against 1,000,000 entries (SQLite file database).

    .venv/bin/python bench/audit.py [--entries 1000000] [--runs 30] [--keep DIR]

Builds a project with a few pipelines, flags and environments through the services, bulk
inserts the entries (executemany in batches, straight into the table), then times the audit
page through the test client, signed in as an admin, for several filters and for page 100 by
keyset, and streams a CSV export of ~100,000 entries measuring time and peak memory.
"""

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import AuditEntry, ReleasePipeline  # noqa: E402
from webapp.services.actors import SYSTEM  # noqa: E402
from webapp.services.platform import flags, projects, users

EVENT_TYPES = [
    "FEATURE_STATE_UPDATED", "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", "FEATURE_CREATED",
    "SEGMENT_UPDATED", "RELEASE_PIPELINE_FEATURE_ADDED", "RELEASE_PIPELINE_FEATURE_REMOVED",
    "PHASED_ROLLOUT_STATE_UPDATED", "RELEASE_PIPELINE_PUBLISHED", "CHANGE_REQUEST_APPROVED",
    "RUN_PAUSED", "RUN_RESUMED", "RUN_ADVANCED",
]
PIPELINES = ["Web rollout", "Mobile rollout", "Backend rollout", "Experiments"]
BATCH = 50_000


def build(folder: Path, entries: int) -> tuple:
    url = f"sqlite:///{folder / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://unused",
                      "SECRET_KEY": "bench", "INSTANCE_PATH": str(folder), "TESTING": True})
    with app.app_context():
        db.create_all()
        project = projects.create_project("Bench", SYSTEM)
        admin = users.create_user("admin@bench.local", "password123")
        projects.add_member(project, admin, "admin", SYSTEM)
        features = [flags.create_feature(project, f"flag_{n:03d}", SYSTEM).id for n in range(60)]
        environments = [e.id for e in projects.environments_of(project.id)]
        pipelines = []
        for name in PIPELINES:
            row = ReleasePipeline(project_id=project.id, name=name, status="published")
            db.session.add(row)
            db.session.flush()
            pipelines.append((row.id, name))
        db.session.commit()
        ids = (project.id, admin.id, project.organisation_id)
        db.engine.dispose()
    started = time.perf_counter()
    _bulk_insert(folder / "bench.db", entries, ids[0], ids[2], features, environments, pipelines)
    print(f"inserted {entries:,} audit entries in {time.perf_counter() - started:.1f} s")
    return app, ids[0], ids[1], features, environments, pipelines


def _bulk_insert(path, entries, project_id, organisation_id, features, environments, pipelines):
    rng = random.Random(6)
    people = [f"user{n}@bench.local" for n in range(8)]
    end = datetime.now(UTC).replace(tzinfo=None)
    start = end - timedelta(days=120)
    step = (end - start) / entries
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    sql = ("INSERT INTO audit_entry (created_at, organisation_id, project_id, environment_id, "
           "actor_type, actor_label, event_type, object_type, object_id, object_label, message, "
           "before, after, pipeline_id, feature_id) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    rows = []
    for n in range(entries):
        at = (start + step * n).strftime("%Y-%m-%d %H:%M:%S.%f")
        feature = rng.choice(features)
        pipeline = rng.choice(pipelines) if rng.random() < 0.4 else None
        if pipeline:
            actor_type, actor = "pipeline", f"Release pipeline {pipeline[1]}"
        else:
            actor_type, actor = "user", rng.choice(people)
        enabled = rng.random() < 0.5
        rows.append((
            at, organisation_id, project_id, rng.choice(environments), actor_type, actor,
            rng.choice(EVENT_TYPES), "feature_state", feature, f"flag_{feature:03d}",
            f"flag_{feature:03d} {'on' if enabled else 'off'}",
            json.dumps({"enabled": not enabled}), json.dumps({"enabled": enabled}),
            pipeline[0] if pipeline else None, feature,
        ))
        if len(rows) == BATCH:
            conn.executemany(sql, rows)
            rows.clear()
    if rows:
        conn.executemany(sql, rows)
    conn.commit()
    conn.close()


def time_page(client, url: str, runs: int) -> tuple[float, float, int]:
    timings = []
    for _ in range(runs + 2):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    timings = sorted(timings[2:])  # the first two warm caches
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    return statistics.median(timings), p95, response.data.count(b'id="audit-entry-')


def stream_export(client, url: str) -> tuple[int, int]:
    response = client.get(url, buffered=False)
    assert response.status_code == 200 and response.is_streamed
    size = lines = 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    response.close()
    return size, lines - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", help="build the database in this folder and keep it")
    options = parser.parse_args()
    folder = Path(options.keep or tempfile.mkdtemp(prefix="railyard-bench-audit-"))
    folder.mkdir(parents=True, exist_ok=True)
    app, project_id, admin_id, features, environments, pipelines = build(folder, options.entries)

    with app.app_context():
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = str(admin_id)
            session["_fresh"] = True
        newest = db.session.scalar(select(AuditEntry.created_at).order_by(AuditEntry.id.desc()))
        week = (newest - timedelta(days=40)).strftime("%Y-%m-%d")
        week_end = (newest - timedelta(days=33)).strftime("%Y-%m-%d")
        page_100 = db.session.scalar(
            select(AuditEntry.id).where(AuditEntry.project_id == project_id)
            .order_by(AuditEntry.id.desc()).offset(99 * 50 - 1).limit(1))
        base = f"/projects/{project_id}/audit"
        cases = [
            ("no filter", base),
            ("pipeline", f"{base}?pipeline={pipelines[0][0]}"),
            ("flag", f"{base}?flag={features[7]}"),
            ("environment", f"{base}?environment={environments[2]}"),
            ("actor", f"{base}?actor=user3@bench.local"),
            ("event type + time range (7 days, 33-40 days ago)",
             f"{base}?event_type=RUN_PAUSED&since={week}&until={week_end}"),
            ("time range only (7 days, 33-40 days ago)",
             f"{base}?since={week}&until={week_end}"),
            ("from only (last 7 days)",
             f"{base}?since={(newest - timedelta(days=7)).strftime('%Y-%m-%d')}"),
            ("event type + old time range (7 days, 110-117 days ago)",
             f"{base}?event_type=RUN_PAUSED&since={_day(newest, 117)}&until={_day(newest, 110)}"),
            ("pipeline + flag + environment + event type",
             f"{base}?pipeline={pipelines[1][0]}&flag={features[3]}&environment="
             f"{environments[0]}&event_type=FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE"),
            ("page 100 by keyset (no filter)", f"{base}?before={page_100}"),
            ("page 100 by keyset (pipeline)", f"{base}?pipeline={pipelines[0][0]}&before="
             + str(_nth_id(project_id, pipelines[0][0], 99 * 50 - 1))),
        ]
        print(f"\naudit page, {options.entries:,} entries, {options.runs} runs each "
              "(test client, signed-in admin, SQLite file, no ANALYZE):")
        for name, url in cases:
            p50, p95, shown = time_page(client, url, options.runs)
            print(f"  {name:<56} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   ({shown} rows)")

        export_url = f"/projects/{project_id}/audit/export.csv?pipeline={pipelines[0][0]}"
        started = time.perf_counter()
        size, rows = stream_export(client, export_url)
        elapsed = time.perf_counter() - started
        tracemalloc.start()
        stream_export(client, export_url)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\nCSV export (pipeline filter): {rows:,} rows, {size / 1e6:.1f} MB in "
              f"{elapsed:.2f} s ({rows / elapsed:,.0f} rows/s); "
              f"peak Python memory while streaming {peak / 1e6:.1f} MB (tracemalloc)")
        db.engine.dispose()
    if options.keep:
        print(f"\ndatabase kept: {folder / 'bench.db'}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _day(newest: datetime, days_ago: int) -> str:
    return (newest - timedelta(days=days_ago)).strftime("%Y-%m-%d")


def _nth_id(project_id: int, pipeline_id: int, offset: int) -> int:
    return db.session.scalar(
        select(AuditEntry.id).where(AuditEntry.project_id == project_id,
                                    AuditEntry.pipeline_id == pipeline_id)
        .order_by(AuditEntry.id.desc()).offset(offset).limit(1))


if __name__ == "__main__":
    main()
