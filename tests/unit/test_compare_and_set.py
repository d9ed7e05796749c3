"""`database.compare_and_set`: the one rule every concurrent writer of a versioned row keeps
(runs, change requests, pipeline drafts). The first writer at a version wins; a writer holding
an older version, or a row that no longer matches its conditions, writes nothing."""

import pytest
from sqlalchemy import select

from webapp.database import compare_and_set
from webapp.extensions import db
from webapp.models import Organisation, Project, ReleasePipeline


@pytest.fixture
def pipeline_id(app) -> int:
    organisation = Organisation(name="Org")
    project = Project(organisation=organisation, name="Shop")
    pipeline = ReleasePipeline(project=project, name="Standard")
    db.session.add(pipeline)
    db.session.commit()
    return pipeline.id


def _row(pipeline_id: int) -> tuple[int, str]:
    db.session.expire_all()
    row = db.session.execute(select(ReleasePipeline.version, ReleasePipeline.name)
                             .where(ReleasePipeline.id == pipeline_id)).one()
    return row.version, row.name


def test_the_writer_at_the_current_version_wins_and_bumps_it(pipeline_id):
    assert compare_and_set(ReleasePipeline, pipeline_id, 1, name="First") is True
    db.session.commit()
    assert _row(pipeline_id) == (2, "First")


def test_a_writer_holding_an_older_version_writes_nothing(pipeline_id):
    assert compare_and_set(ReleasePipeline, pipeline_id, 1, name="First")
    assert compare_and_set(ReleasePipeline, pipeline_id, 1, name="Second") is False
    db.session.commit()
    assert _row(pipeline_id) == (2, "First")


def test_extra_conditions_must_hold_too(pipeline_id):
    published = [ReleasePipeline.status == "published"]
    assert compare_and_set(ReleasePipeline, pipeline_id, 1, where=published, name="X") is False
    draft = [ReleasePipeline.status == "draft"]
    assert compare_and_set(ReleasePipeline, pipeline_id, 1, where=draft, name="Y") is True
    db.session.commit()
    assert _row(pipeline_id) == (2, "Y")


def test_without_an_expected_version_it_bumps_whatever_version_the_row_has(pipeline_id):
    assert compare_and_set(ReleasePipeline, pipeline_id, 1, name="A")
    assert compare_and_set(ReleasePipeline, pipeline_id, None, name="B") is True
    db.session.commit()
    assert _row(pipeline_id) == (3, "B")


def test_an_unknown_row_is_not_written(pipeline_id):
    assert compare_and_set(ReleasePipeline, pipeline_id + 1000, 1, name="Ghost") is False
