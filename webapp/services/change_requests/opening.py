"""A person's flag change in an environment: applied at once when it needs no approvals,
otherwise opened as a change request with the exact diff.
"""

from typing import Any

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    Environment,
    Feature,
    Segment,
)
from webapp.models.changes import (
    Change,
    OverrideChange,
    OverrideRemoval,
    ShownChange,
    StateChange,
)
from webapp.orm import fit
from webapp.services.actors import Actor
from webapp.services.errors import Forbidden, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.platform import flag_changes, flags, values
from webapp.services.runs import planning
from webapp.services.runs.approvals import (
    OPENED,
    _audit_fields,
    _hash,
    _notify_reviewers,
    with_diff,
)

_UNSET: Any = object()

# An organisation API key acts for no one: change requests name the people who asked,
# reviewed and committed.
NOT_A_PERSON = ("Change requests are a person's act and an organisation API key is not a "
                "person: {act} with a personal token (Authorization: Token <token>).")


def set_state(feature: Feature, environment_id: int, actor: Actor, *, enabled: bool | None = None,
              raw_value: Any = _UNSET) -> ChangeRequest | None:
    """A person's toggle or value edit in one environment: applied at once
    (`flags.set_state`) when the environment needs no approvals, otherwise a change request
    holding it (returned).

    Refuses what `flags.set_state` refuses. Audits CHANGE_REQUEST_OPENED; notifies reviewers.
    """
    environment = flags.environment_of(feature.project_id, environment_id)
    if environment.minimum_change_request_approvals <= 0:

        kwargs = {} if raw_value is _UNSET else {"raw_value": raw_value}
        flags.set_state(feature, environment_id, actor, enabled=enabled, **kwargs)
        return None
    change: StateChange = {"kind": "state", "environment_id": environment.id,
                           "feature_id": feature.id}
    if enabled is not None:
        change["enabled"] = bool(enabled)
    if raw_value is not _UNSET:
        change["value"] = values.parse(feature.value_type, raw_value)
    return open_manual(feature, environment, [change], actor)


def save_override(feature: Feature, environment_id: int, segment_id: int | None, actor: Actor, *,
                  enabled: bool, raw_value: Any = None, priority: Any = None,
                  must_exist: bool = False) -> ChangeRequest | None:
    """A person's new or edited segment override: applied at once (`flags.save_override`) when
    the environment needs no approvals, otherwise a change request holding it (returned).

    Refuses what `flags.save_override` refuses. Audits CHANGE_REQUEST_OPENED.
    """
    environment = flags.environment_of(feature.project_id, environment_id)
    if environment.minimum_change_request_approvals <= 0:

        flags.save_override(feature, environment_id, segment_id, actor, enabled=enabled,
                            raw_value=raw_value, priority=priority, must_exist=must_exist)
        return None
    segment = flags.segment_of(feature.project_id, segment_id)
    value, parsed_priority = values.parse_override(feature.value_type, raw_value, priority)
    change: OverrideChange = {
        "kind": "override", "environment_id": environment.id, "feature_id": feature.id,
        "segment_id": segment.id, "enabled": bool(enabled), "value": value,
        "priority": parsed_priority}
    exists = flag_changes.read_target(change) is not None
    if must_exist and not exists:
        raise NotFound("Override not found.")
    if not must_exist and exists:
        raise Invalid("Override exists.", {"segment_id": [
            f"{segment.name} already has an override in {environment.name}; edit it below."]})
    return open_manual(feature, environment, [change], actor)


def remove_override(feature: Feature, environment_id: int, segment_id: int, actor: Actor
                    ) -> ChangeRequest | None:
    """A person's override removal: applied at once (`flags.remove_override`) when the
    environment needs no approvals, otherwise a change request holding it (returned).

    Refuses what `flags.remove_override` refuses. Audits CHANGE_REQUEST_OPENED.
    """
    environment = flags.environment_of(feature.project_id, environment_id)
    if environment.minimum_change_request_approvals <= 0:

        flags.remove_override(feature, environment_id, segment_id, actor)
        return None
    change: OverrideRemoval = {"kind": "remove_override", "environment_id": environment.id,
                               "feature_id": feature.id, "segment_id": segment_id}
    if flag_changes.read_target(change) is None:
        raise NotFound("Override not found.")
    return open_manual(feature, environment, [change], actor)


def open_manual(feature: Feature, environment: Environment, changes: list[Change],
                actor: Actor, *, title: str | None = None, description: str = "") -> ChangeRequest:
    """Open a change request for a person's `changes` (flag_changes change dicts) to one flag
    in one environment that needs approvals.

    Refuses a flag a release pipeline owns (Conflict), an environment or flag of another project
    (NotFound), no changes, changes that would change nothing (Invalid), and API keys without a
    user (Forbidden). Audits CHANGE_REQUEST_OPENED; notifies reviewers.
    """
    if actor.user_id is None:
        raise Forbidden(NOT_A_PERSON.format(act="ask for changes"))
    if environment.project_id != feature.project_id or any(
            c["feature_id"] != feature.id or c["environment_id"] != environment.id
            for c in changes):
        raise NotFound("Environment not found.")
    planning.start_writing()
    flag_changes.refuse_if_in_flight(feature.id)
    shown = with_diff(changes)
    if not shown:
        raise Invalid("Nothing to change.", {"form": ["Choose a change."]})
    if all(c["before"] == c["after"] for c in shown):
        raise Invalid("Nothing would change.",
                      {"form": [f"{feature.name} is already like this in {environment.name}."]})
    moment = clock_now()
    request = ChangeRequest(
        project_id=feature.project_id, environment_id=environment.id, feature_id=feature.id,
        title=fit(ChangeRequest.title, title or f"{feature.name}: {_summary(shown, feature)} in "
                                                 f"{environment.name}"),
        description=description, status="open", changes=shown, changes_hash=_hash(shown, 1),
        created_by_id=actor.user_id, version=1, created_at=moment, updated_at=moment)
    db.session.add(request)
    db.session.flush()
    audit.record(actor, OPENED, f"Change request #{request.id} opened: {request.title}",
                 **_audit_fields(request, feature.name), after={"changes": shown})
    _notify_reviewers(request, environment, feature.name)
    db.session.commit()
    return request


def _describe(change: StateChange | OverrideChange | ShownChange) -> str:
    parts = []
    if "enabled" in change:
        parts.append("enabled" if change["enabled"] else "disabled")
    if "value" in change:
        parts.append(f"value set to “{values.show(change['value'])}”")
    return " and ".join(parts) or "saved"


def _summary(shown: list[ShownChange], feature: Feature) -> str:
    change = shown[0]
    if change["kind"] == "state":
        return _describe(change)
    segment = db.session.get(Segment, change["segment_id"])
    name = segment.name if segment else f"#{change['segment_id']}"
    if change["kind"] == "remove_override":
        return f"remove the override for {name}"
    return f"override for {name} {_describe(change)}"
