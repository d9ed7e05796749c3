"""Pipelines built through the services, the way the builder builds them."""

import pytest

from webapp.extensions import db
from webapp.services.actors import SYSTEM
from webapp.services.pipelines import builder, catalog


class Build:
    """build.pipeline(project, stages=[...]) with stage dicts: name, env (name), wait (seconds),
    actions (list of form dicts as the builder posts them)."""

    def __init__(self, make):
        self.make = make

    def pipeline(self, project, name="Web release", stages=(), publish=False):
        pipeline = builder.create_pipeline(project, name, SYSTEM)
        envs = {e.name: e.id for e in self.make.environments(project)}
        for spec in stages:
            stage = builder.add_stage(pipeline, pipeline.version, SYSTEM, name=spec.get("name"),
                                        environment_id=envs.get(spec.get("env")))
            if spec.get("wait"):
                wait = {"trigger_type": "WAIT_FOR", "wait_amount": str(spec["wait"] // 60),
                        "wait_unit": "minutes"}
                builder.update_stage(pipeline, pipeline.version, stage.id, wait, SYSTEM)
            default = [{"action_type": "TOGGLE_FEATURE", "enabled": "true"}]
            for action in spec.get("actions", default):
                builder.add_action(pipeline, pipeline.version, stage.id, action, SYSTEM)
        pipeline = catalog.get_pipeline(project.id, pipeline.id)
        if publish:
            builder.publish_pipeline(pipeline, pipeline.version, SYSTEM)
            pipeline = catalog.get_pipeline(project.id, pipeline.id)
        return pipeline

    def three_stages(self, project, **kwargs):
        return self.pipeline(project, stages=[
            {"name": "Development", "env": "Development"},
            {"name": "Staging", "env": "Staging", "wait": 86400},
            {"name": "Production", "env": "Production", "wait": 2 * 86400},
        ], **kwargs)


@pytest.fixture
def build(make):
    return Build(make)


def _fresh_reads(client):
    """End the test's own read transaction around each request: with SQLite in WAL mode an open
    transaction keeps reading its old snapshot, and the test wants to see what the request did."""
    send = client.open

    def open_(*args, **kwargs):
        db.session.rollback()
        response = send(*args, **kwargs)
        db.session.rollback()
        return response

    client.open = open_
    return client


@pytest.fixture
def client(client):
    return _fresh_reads(client)


@pytest.fixture
def hx(hx):
    return _fresh_reads(hx)
