"""The shapes of a flag change: what `flag_changes` applies, what a release stage plans, and
what a change request stores (`ChangeRequest.changes`).

Typed dicts, so they stay the plain dicts that are stored (change requests, audit entries) and
sent (webhooks, the API) as they are; `kind` tells the shapes apart. A key left out of a change
("enabled", "value") is left as it is.
"""

from typing import Any, Literal, NotRequired, TypedDict


class ChangeTarget(TypedDict):
    """Where a change applies: the flag in one environment."""

    environment_id: int
    feature_id: int


class ActionTag(TypedDict):
    """The stage action a release stage's change comes from."""

    action_id: int
    action_type: str


class _Change(ChangeTarget):
    # A release stage's change carries its ActionTag.
    action_id: NotRequired[int]
    action_type: NotRequired[str]


class StateChange(_Change):
    """The flag's on/off and value in the environment."""

    kind: Literal["state"]
    enabled: NotRequired[bool]
    value: NotRequired[Any]


class OverrideChange(_Change):
    """The flag's override for a segment, created when missing (from the flag's state there at
    that moment, with the next priority unless one is given)."""

    kind: Literal["override"]
    segment_id: int
    enabled: NotRequired[bool]
    value: NotRequired[Any]
    priority: NotRequired[int | None]


class OverrideRemoval(_Change):
    kind: Literal["remove_override"]
    segment_id: int


class RolloutStart(_Change):
    """A stage's phased rollout: its hidden segment does not exist until the stage applies."""

    kind: Literal["rollout"]
    percent: int
    enabled: bool
    value: NotRequired[Any]


# What `flag_changes` applies.
Change = StateChange | OverrideChange | OverrideRemoval
# What a release stage's actions plan (each tagged with its action).
PlannedChange = StateChange | OverrideChange | RolloutStart
ChangeKind = Literal["state", "override", "remove_override", "rollout"]


class TargetState(TypedDict):
    """A change's target as it is: a state's on/off and value, an override's priority too."""

    enabled: bool
    value: Any
    priority: NotRequired[int]


class RolloutState(TypedDict):
    """A phased rollout's start as a change request shows it."""

    percent: int
    enabled: bool
    value: NotRequired[Any]


class ShownChange(TypedDict):
    """A change as a change request stores and shows it: the change's own keys (whichever its
    kind has), with its target `before` and `after` as if it were applied now."""

    kind: ChangeKind
    environment_id: int
    feature_id: int
    segment_id: NotRequired[int]
    enabled: NotRequired[bool]
    value: NotRequired[Any]
    priority: NotRequired[int | None]
    percent: NotRequired[int]
    action_id: NotRequired[int]
    action_type: NotRequired[str]
    before: TargetState | None
    after: TargetState | RolloutState | None
