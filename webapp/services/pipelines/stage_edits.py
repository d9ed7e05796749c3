"""Builder edits on the order and the presence of whole stages: reorder in one request (drag and
drop, or the keyboard), restore a stage just removed (Undo), and what is wrong with each stage
(shown on its card before anyone tries to publish).

Each edit follows the builder's rule (pipelines/builder.py): open the draft at the version the
page showed, change the rows, compare-and-set the version, write one RELEASE_PIPELINE_UPDATED
entry, commit.
"""

from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, PipelineStage, ReleasePipeline, Segment, StageAction
from webapp.models.health import StageHealthCheck
from webapp.services.actors import Actor
from webapp.services.errors import Invalid
from webapp.services.pipelines.describe import wait_parts
from webapp.services.pipelines.drafts import (
    audit_pipeline,
    claim_version,
    open_draft,
    stage_snapshot,
)
from webapp.services.pipelines.inputs import MAX_STAGES
from webapp.services.platform.projects import check_name

# What "Wait" offers first when a stage's trigger becomes a wait: one hour, the soak a product
# manager usually gives a change before the next environment (long enough for dashboards and
# alerts to show a regression, short enough that a stage moves on the same working day).
# The old default, one day, read as a typo next to "When the flag enters this stage".
DEFAULT_WAIT_SECONDS = 3600


def reorder_stages(pipeline: ReleasePipeline, version: Any, stage_ids: list[Any],
                   actor: Actor) -> None:
    """Put the draft's stages in the order of `stage_ids` (every stage exactly once): one
    request whatever the number of places a stage moves. Refuses a list that is not the
    pipeline's stages (Invalid), a published or stale pipeline (Conflict). Audited as
    RELEASE_PIPELINE_UPDATED with the order before and after; nothing when the order is the
    same."""
    pipeline, expected = open_draft(pipeline, version)
    stages = {str(stage.id): stage for stage in pipeline.stages}
    wanted = [str(raw).strip() for raw in stage_ids]
    if sorted(wanted) != sorted(stages):
        raise Invalid("Not this pipeline's stages.", {"order": [
            "The stages changed since the page was drawn; reload it and move the stage again."]})
    before = [stage.name for stage in pipeline.stages]
    after = [stages[key].name for key in wanted]
    if [str(stage.id) for stage in pipeline.stages] == wanted:
        return
    moved = _moved([str(stage.id) for stage in pipeline.stages], wanted, stages)
    claim_version(pipeline, expected)
    for position, key in enumerate(wanted):
        stages[key].position = position
    audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_UPDATED",
                             f"Release pipeline {pipeline.name}: {moved}",
                             before={"order": before}, after={"order": after})
    db.session.commit()


def _moved(old_keys: list[str], wanted: list[str], stages: dict[str, PipelineStage]) -> str:
    """"stage Beta moved from 3 to 1", or "stages reordered" when several changed place
    otherwise than by one stage moving."""
    for key in wanted:
        rest_old = [k for k in old_keys if k != key]
        rest_new = [k for k in wanted if k != key]
        if rest_old == rest_new:
            return (f"stage {stages[key].name} moved from {old_keys.index(key) + 1} to "
                    f"{wanted.index(key) + 1}")
    return "stages reordered"


def restore_stage(pipeline: ReleasePipeline, version: Any, snapshot: dict[str, Any],
                  actor: Actor) -> PipelineStage:
    """Put back a stage removed from this draft (Undo), at its place, with its actions and
    health checks, from the snapshot `remove_stage` returned. Environments and segments that
    are no longer the project's are left empty (the card then says what is missing). Refuses a
    31st stage or a bad snapshot (Invalid), a published or stale pipeline (Conflict). Audited as
    RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    if len(pipeline.stages) >= MAX_STAGES:
        raise Invalid("Too many stages.", {"stage": [
            f"A pipeline has at most {MAX_STAGES} stages; remove one before undoing."]})
    try:
        stage = _stage_from(pipeline.project_id, snapshot)
    except (KeyError, TypeError, ValueError):
        raise Invalid("Cannot undo.", {"stage": ["This removal cannot be undone."]}) from None
    position = min(max(int(snapshot.get("position", 0)), 0), len(pipeline.stages))
    claim_version(pipeline, expected)
    for other in pipeline.stages:
        if other.position >= position:
            other.position += 1
    stage.position = position
    pipeline.stages.insert(position, stage)
    db.session.flush()
    audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_UPDATED",
                             f"Release pipeline {pipeline.name}: stage {position + 1} "
                             f"({stage.name}) restored", before=None,
                             after=stage_snapshot(stage))
    db.session.commit()
    return stage


def _stage_from(project_id: int, snapshot: dict[str, Any]) -> PipelineStage:
    environments = set(db.session.scalars(
        select(Environment.id).where(Environment.project_id == project_id)))
    segments = set(db.session.scalars(select(Segment.id).where(
        Segment.project_id == project_id, Segment.is_system.is_(False))))
    environment_id = snapshot.get("environment_id")
    stage = PipelineStage(
        name=check_name(str(snapshot["name"]), "stage"),
        environment_id=environment_id if environment_id in environments else None,
        trigger_type=str(snapshot.get("trigger_type") or "ON_ENTER"),
        wait_seconds=snapshot.get("wait_seconds"),
        on_unhealthy=str(snapshot.get("on_unhealthy") or "HOLD"))
    for index, action in enumerate(snapshot.get("actions") or []):
        segment_id = action.get("segment_id")
        stage.actions.append(StageAction(
            position=index, action_type=str(action["action_type"]),
            enabled=action.get("enabled"), value=action.get("value"),
            sets_value="value" in action,
            segment_id=segment_id if segment_id in segments else None,
            rollout_initial=action.get("rollout_initial"), rollout_step=action.get("rollout_step"),
            rollout_interval_seconds=action.get("rollout_interval_seconds")))
    for index, check in enumerate(snapshot.get("health_checks") or []):
        stage.checks.append(StageHealthCheck(
            position=index, kind=str(check["kind"]), name=str(check.get("name") or ""),
            query=check.get("query"), comparison=check.get("comparison"),
            threshold=check.get("threshold"),
            interval_seconds=int(check.get("interval_seconds") or 30),
            failures_to_trip=int(check.get("failures_to_trip") or 1),
            selector=check.get("selector")))
    return stage


def wait_parts_default() -> tuple[int | None, str]:
    """DEFAULT_WAIT_SECONDS as the builder's (amount, unit)."""
    return wait_parts(DEFAULT_WAIT_SECONDS)


def stage_issues(stage: PipelineStage) -> list[str]:
    """What keeps this stage from being published, in a few words each ("no environment",
    "no actions yet"); empty when it is ready. The publish check lists the same, and more
    (another project's environment, bad action settings)."""
    issues = []
    if not (stage.name or "").strip():
        issues.append("no name")
    if stage.environment_id is None:
        issues.append("no environment: choose where it applies")
    if stage.trigger_type == "WAIT_FOR" and not stage.wait_seconds:
        issues.append("no wait: say how long")
    if not stage.actions:
        issues.append("no actions yet: add what it does to the flag")
    if sum(a.action_type == "PHASED_ROLLOUT" for a in stage.actions) > 1:
        issues.append("more than one phased rollout")
    return issues
