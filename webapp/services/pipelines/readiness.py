"""Whether a draft pipeline can be published: every problem at once, in the words the
builder shows beside the Publish button (and the API answers with)."""

from webapp.models import TRIGGER_TYPES, Environment, PipelineStage, ReleasePipeline, Segment
from webapp.services.pipelines import check_inputs
from webapp.services.pipelines.catalog import _project_ids
from webapp.services.pipelines.inputs import MAX_STAGES, MAX_WAIT_SECONDS, _action_problems


def publish_problems(pipeline: ReleasePipeline) -> list[str]:
    """Everything that keeps the pipeline from being published, all at once (empty when fine)."""
    problems: list[str] = []
    stages = pipeline.stages
    if not stages:
        return ["Add at least one stage before publishing."]
    if len(stages) > MAX_STAGES:
        problems.append(f"A pipeline has at most {MAX_STAGES} stages; this one has {len(stages)}.")
    environments = _project_ids(Environment, pipeline.project_id)
    segments = _project_ids(Segment, pipeline.project_id, visible_only=True)
    for stage in stages:
        where = f"Stage {stage.position + 1}" + (f" ({stage.name})" if stage.name else "")
        if not (stage.name or "").strip():
            problems.append(f"{where}: give it a name.")
        if stage.environment_id is None:
            problems.append(f"{where}: choose an environment.")
        elif stage.environment_id not in environments:
            problems.append(f"{where}: its environment is not one of this project's.")
        if stage.trigger_type not in TRIGGER_TYPES:
            problems.append(f"{where}: unknown trigger {stage.trigger_type!r}.")
        elif stage.trigger_type == "WAIT_FOR" and not (
            stage.wait_seconds and 0 < stage.wait_seconds <= MAX_WAIT_SECONDS
        ):
            problems.append(f"{where}: the wait must be more than 0 and at most 365 days.")
        if not stage.actions:
            problems.append(f"{where}: add at least one action.")
        rollouts = 0
        for action in stage.actions:
            label = f"{where}, action {action.position + 1}"
            problems.extend(f"{label}: {p}" for p in _action_problems(action, segments))
            rollouts += action.action_type == "PHASED_ROLLOUT"
        if rollouts > 1:
            problems.append(f"{where}: at most one phased rollout per stage.")
        problems.extend(_check_problems(where, stage))
    return problems


def _check_problems(where: str, stage: PipelineStage) -> list[str]:
    return [f"{where}, health check {check.position + 1}: {problem}"
            for check in stage.checks for problem in check_inputs.check_problems(check)]
