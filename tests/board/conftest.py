"""The board's published pipeline and runs put straight into any stage (bulk inserts, any
status), and a statement counter; the clock and make_pipeline are tests/support/pipelines.py."""

from datetime import timedelta

import pytest
from sqlalchemy import event, insert

from tests.support.pipelines import START
from webapp.extensions import db
from webapp.models import Feature, PipelineRun, StageExecution


@pytest.fixture
def pipe(make_pipeline):
    """Dev at once, Staging after a day, Production by phased rollout."""
    return make_pipeline(
        [
            {"env": "Development", "name": "Dev"},
            {"env": "Staging", "name": "QA", "trigger": "WAIT_FOR", "wait": 86400},
            {
                "env": "Production",
                "name": "Prod",
                "actions": [
                    {
                        "type": "PHASED_ROLLOUT",
                        "enabled": True,
                        "initial": 10,
                        "step": 30,
                        "interval": 3600,
                    }
                ],
            },
        ],
        name="Web release",
    )


@pytest.fixture
def put(project):
    """put(pipeline, position, status="waiting", names=[...] or n=..., **run columns) -> run ids:
    flags created and placed in a stage directly (bulk inserts, any number)."""

    def _put(pipeline, position, status="waiting", *, names=None, n=1, prefix="flag", **columns):
        names = names or [f"{prefix}_{position}_{i:05d}" for i in range(n)]
        features = (
            db.session.execute(
                insert(Feature).returning(Feature.id),
                [
                    {
                        "project_id": project.id,
                        "name": name,
                        "value_type": "none",
                        "created_at": START,
                    }
                    for name in names
                ],
            )
            .scalars()
            .all()
        )
        stage = pipeline.stages[min(position, len(pipeline.stages) - 1)]
        ended = status in ("launched", "removed", "rolled_back")
        values = {
            "entered_at": START,
            "due_at": None
            if ended or status == "paused"
            else START + timedelta(seconds=stage.wait_seconds or 0),
            **columns,
        }
        if ended:
            values.setdefault("ended_at", START)
            values.setdefault("end_reason", status)
        run_ids = (
            db.session.execute(
                insert(PipelineRun).returning(PipelineRun.id),
                [
                    {
                        "project_id": project.id,
                        "pipeline_id": pipeline.id,
                        "feature_id": fid,
                        "stage_id": stage.id,
                        "stage_position": position,
                        "status": status,
                        "version": 1,
                        "created_at": START,
                        **values,
                    }
                    for fid in features
                ],
            )
            .scalars()
            .all()
        )
        db.session.execute(
            insert(StageExecution),
            [
                {
                    "run_id": rid,
                    "stage_id": s.id,
                    "position": s.position,
                    "entered_at": START,
                    "completed_at": START if s.position < position or ended else None,
                    "snapshot": {},
                }
                for rid in run_ids
                for s in pipeline.stages
                if s.position <= position
            ],
        )
        db.session.commit()
        return run_ids

    return _put


@pytest.fixture
def statements(app):
    """A counter of SQL statements: `with statements() as seen: ...; len(seen)`."""
    from contextlib import contextmanager

    @contextmanager
    def _count():
        seen: list[str] = []

        def _listen(conn, cursor, statement, *args):
            seen.append(statement)

        engine = db.engine
        event.listen(engine, "before_cursor_execute", _listen)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", _listen)

    return _count
