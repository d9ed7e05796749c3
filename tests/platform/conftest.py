"""Fixtures of the flag platform screens: the Acme project's environments, a flag, a segment,
and a flag held by a release pipeline (rows as the engine makes them)."""

import pytest

from webapp.extensions import db
from webapp.models import PipelineRun, PipelineStage, ReleasePipeline, StageAction


@pytest.fixture
def envs(envs):
    fresh()
    return envs


def fresh() -> None:
    """End the test's read transaction: with SQLite in WAL mode an open one keeps seeing the
    database as it was, not what the requests committed since."""
    db.session.commit()


@pytest.fixture
def staging(envs):
    return envs["Staging"]


@pytest.fixture
def flag(make, project):
    return make.feature(project, "checkout", description="New checkout")


@pytest.fixture
def text_flag(make, project):
    return make.feature(project, "banner", value_type="string", default_value="Hello")


@pytest.fixture
def number_flag(make, project):
    return make.feature(project, "max_upload", value_type="integer", default_value=10)


@pytest.fixture
def segment(make, project):
    return make.segment(project, "Pro users")


@pytest.fixture
def pipeline_with(project):
    """pipeline_with(name, segment=None, deleted=False, flag=None): a published pipeline with one
    stage (an action on the segment when given), optionally holding `flag` in flight."""

    def _make(name="Rollout", *, segment=None, deleted=False, flag=None, environment=None):
        from webapp.clock import now

        pipeline = ReleasePipeline(project_id=project.id, name=name, status="published",
                                   deleted_at=now() if deleted else None)
        db.session.add(pipeline)
        db.session.flush()
        stage = PipelineStage(pipeline_id=pipeline.id, position=0, name="Stage 1",
                              environment_id=environment.id if environment else None)
        db.session.add(stage)
        db.session.flush()
        db.session.add(StageAction(stage_id=stage.id, position=0,
                                   action_type=("TOGGLE_FEATURE_FOR_SEGMENT" if segment
                                                else "TOGGLE_FEATURE"),
                                   enabled=True, segment_id=segment.id if segment else None))
        if flag is not None:
            db.session.add(PipelineRun(project_id=project.id, pipeline_id=pipeline.id,
                                       feature_id=flag.id, stage_id=stage.id, status="waiting"))
        db.session.commit()
        return pipeline

    return _make
