"""A stage's actions apply in order, each seeing what the earlier ones did, as the SDKs see it.

The flag `banner` starts off with the value "v0" in Development. One ON_ENTER stage there
holds two actions; the table gives what a member of the segment Beta and anyone else then
read through the SDK API (remote evaluation) and through the environment document (the
official SDK's local evaluation), which must agree. An override created by a toggle action
carries the flag's value at that moment; one created by a value action carries the enabled
state at that moment (PRODUCT.md, Actions).
"""

import pytest
from flagsmith import Flagsmith
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import SegmentOverride
from webapp.services.actors import Actor
from webapp.services.platform import sdk_documents
from webapp.services.runs import controls, sweep, transition

ON = {"type": "TOGGLE_FEATURE", "enabled": True}
VALUE = {"type": "UPDATE_FEATURE_VALUE", "value": "new"}
SEG_ON = {"type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": True}
SEG_VALUE = {"type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT", "value": "beta"}

T, F = True, False

# (first action, second action, what Beta reads, what everyone else reads)
TABLE = [
    (ON, ON, (T, "v0"), (T, "v0")),
    (ON, VALUE, (T, "new"), (T, "new")),
    (ON, SEG_ON, (T, "v0"), (T, "v0")),
    (ON, SEG_VALUE, (T, "beta"), (T, "v0")),     # the case: was (False, "beta")
    (VALUE, ON, (T, "new"), (T, "new")),
    (VALUE, VALUE, (F, "new"), (F, "new")),
    (VALUE, SEG_ON, (T, "new"), (F, "new")),     # was (True, None)
    (VALUE, SEG_VALUE, (F, "beta"), (F, "new")),
    (SEG_ON, ON, (T, "v0"), (T, "v0")),          # was (True, None)
    (SEG_ON, VALUE, (T, "v0"), (F, "new")),      # the override kept the value of its moment
    (SEG_ON, SEG_ON, (T, "v0"), (F, "v0")),
    (SEG_ON, SEG_VALUE, (T, "beta"), (F, "v0")),
    (SEG_VALUE, ON, (F, "beta"), (T, "v0")),     # the override kept the state of its moment
    (SEG_VALUE, VALUE, (F, "beta"), (F, "new")),
    (SEG_VALUE, SEG_ON, (T, "beta"), (F, "v0")),
    (SEG_VALUE, SEG_VALUE, (F, "beta"), (F, "v0")),
]


def _name(action):
    return {id(ON): "on", id(VALUE): "value", id(SEG_ON): "seg_on",
            id(SEG_VALUE): "seg_value"}[id(action)]


class _Document:
    """The official SDK's offline handler: local evaluation of the document Railyard serves."""

    def __init__(self, document):
        self.document = document

    def get_environment(self):
        return self.document


def _remote(client, env, identifier, traits):
    body = client.post("/api/v1/identities/", headers={"X-Environment-Key": env.client_key},
                       json={"identifier": identifier, "traits": [
                           {"trait_key": k, "trait_value": v} for k, v in traits.items()]},
                       ).get_json()
    [flag] = [f for f in body["flags"] if f["feature"]["name"] == "banner"]
    return flag["enabled"], flag["feature_state_value"]


def _local(document, identifier, traits):
    flags = Flagsmith(offline_mode=True, offline_handler=_Document(document)) \
        .get_identity_flags(identifier, traits)
    return flags.is_feature_enabled("banner"), flags.get_feature_value("banner")


@pytest.mark.parametrize("path", ["batch", "one_by_one"])
@pytest.mark.parametrize(("first", "second", "beta", "others"), TABLE,
                         ids=[f"{_name(a)}-then-{_name(b)}" for a, b, _, _ in TABLE])
def test_actions_apply_in_order_as_the_sdks_see_it(
        clock, client, make, project, editor, envs, make_pipeline, path,
        first, second, beta, others):
    flag = make.feature(project, "banner", value_type="string", default_value="v0")
    segment = make.segment(project, "Beta", [{"type": "ALL", "rules": [], "conditions": [
        {"property": "plan", "operator": "EQUAL", "value": "beta"}]}])
    actions = [{**action, "segment_id": segment.id} if "SEGMENT" in action["type"] else action
               for action in (first, second)]
    pipeline = make_pipeline([{"env": "Development", "actions": actions}])
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    if path == "batch":  # plain stages fire set-based, many runs per transaction
        sweep.advance(bell.run_id, bell.version)
    else:  # the path of rollout stages and approved change requests
        transition.transition(bell.run_id, bell.version)
    db.session.rollback()
    sdk_documents.clear_cache()

    development = envs["Development"]
    overrides = db.session.scalars(select(SegmentOverride).where(
        SegmentOverride.feature_id == flag.id)).all()
    assert all(o.value is not None for o in overrides)  # never null by accident
    document = client.get("/api/v1/environment-document/",
                          headers={"X-Environment-Key": development.server_key}).get_json()
    for identifier, traits, expected in (("bea", {"plan": "beta"}, beta),
                                         ("olly", {"plan": "free"}, others)):
        assert _remote(client, development, identifier, traits) == expected
        assert _local(document, identifier, traits) == expected


def test_a_phased_rollout_without_a_value_carries_the_flag_value(
        clock, client, make, project, editor, envs, make_pipeline):
    flag = make.feature(project, "banner", value_type="string", default_value="v0")
    pipeline = make_pipeline([{"env": "Development", "actions": [
        {"type": "UPDATE_FEATURE_VALUE", "value": "new"},
        {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 50, "step": 10,
         "interval": 60}]}])
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    db.session.rollback()
    [hidden] = db.session.scalars(select(SegmentOverride).where(
        SegmentOverride.feature_id == flag.id)).all()
    assert (hidden.enabled, hidden.value) == (True, "new")
