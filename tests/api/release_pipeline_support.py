"""Helpers of the release-pipeline API tests: calling the admin API as someone, and pipeline
bodies in the wire format."""

from .conftest import api as call
from .conftest import token_for

__all__ = ["call", "token_for"]


def toggle(enabled=True):
    return {"action_type": "TOGGLE_FEATURE", "action_body": {"enabled": enabled}}


def stage(env, name=None, actions=None, wait=None, **extra):
    trigger = ({"trigger_type": "WAIT_FOR", "trigger_body": {"wait_for": wait}} if wait
               else {"trigger_type": "ON_ENTER", "trigger_body": None})
    return {"name": name or env.name, "environment": env.id, "trigger": trigger,
            "actions": [toggle()] if actions is None else actions, **extra}


def two_stages(platform, name="Web release"):
    """Development at once, then Production a day later."""
    return {"name": name, "description": "Dev, then prod", "stages": [
        stage(platform.development, "Dev"),
        stage(platform.production, "Prod", wait="1 00:00:00"),
    ]}


def pipelines_path(project, pipeline_id=None, suffix=""):
    path = f"projects/{project.id}/release-pipelines/"
    return path if pipeline_id is None else f"{path}{pipeline_id}/{suffix}"


def create(client, project, key, body):
    response = call(client, "POST", pipelines_path(project), key=key, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def published(client, project, key, body):
    pipeline = create(client, project, key, body)
    response = call(client, "POST", pipelines_path(project, pipeline["id"], "publish-pipeline/"),
                    key=key)
    assert response.status_code == 200, response.get_json()
    return response.get_json()
