"""Flags joining a published pipeline: which can join, why the others cannot, and the batched
writes that add thousands at once.

A bulk add is never all or nothing: every flag that can join is added, and every other one is
reported with its reason (another project's or unknown, already in a pipeline, a type that does
not fit a value the pipeline sets). Only a problem of the pipeline itself (a draft, deleted, no
stages) or of the caller refuses the whole request.

Runs, their first stage entries and their audit entries are written with multi-row INSERTs
(SQLAlchemy's insertmanyvalues: a few statements per thousand flags, not three per flag); the
pipeline's stages in words, which each run keeps, are computed once. Adding a flag changes no
state an SDK sees (the engine applies the first stage's actions and bumps the environments'
revisions then), so no revision is bumped here.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Column, ColumnElement, Insert, Table, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, selectinload

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    Feature,
    PipelineRun,
    PipelineStage,
    Project,
    ReleasePipeline,
    StageExecution,
    User,
)
from webapp.orm import table_of
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Forbidden, Invalid, NotFound
from webapp.services.governance import webhook_events
from webapp.services.pipelines import describe
from webapp.services.pipelines.describe import show_value
from webapp.services.platform import access
from webapp.services.platform.values import value_fits
from webapp.services.runs import planning
from webapp.services.runs.planning import Bell

# Rows per INSERT: 1,000 rows of ~15 columns stay far below PostgreSQL's 65,535 bound
# parameters and SQLite's 32,766, and a few statements carry 10,000 flags.
BATCH = 1000
# Ids per IN (...) when reading the chosen flags: the same bound-parameter limits.
READ_CHUNK = 5000
# One retry when another request added one of the flags between our check and our insert
# (PostgreSQL only: on SQLite the writer lock is held from the check on).
RACE_RETRIES = 1

_TYPE_WORDS = {"string": "text", "integer": "whole-number", "boolean": "true/false",
               "none": "no"}

T = TypeVar("T")


@dataclass(frozen=True)
class FlagOutcome:
    """What happened to one chosen flag: added (with its run), or why it could not join."""

    feature_id: int
    name: str
    added: bool
    reason: str = ""
    run_id: int | None = None


@dataclass
class AddReport:
    """A bulk add's answer: one outcome per chosen flag, in the order chosen, and the bells the
    caller rings after the commit."""

    pipeline_id: int
    pipeline_name: str
    outcomes: list[FlagOutcome] = field(default_factory=list)
    bells: list[Bell] = field(default_factory=list)

    @property
    def added(self) -> list[FlagOutcome]:
        return [o for o in self.outcomes if o.added]

    @property
    def refused(self) -> list[FlagOutcome]:
        return [o for o in self.outcomes if not o.added]

    def summary(self) -> str:
        """One sentence for the page: how many joined, and every flag that could not, why."""
        added, refused = len(self.added), self.refused
        head = (f"{added} flag{'s' if added != 1 else ''} added to {self.pipeline_name}."
                if added else f"No flag was added to {self.pipeline_name}.")
        if not refused:
            return head
        why = "; ".join(f"{o.name}: {o.reason}" for o in refused)
        return f"{head} {len(refused)} could not join — {why}"


@dataclass(frozen=True)
class PipelineChoice:
    """A pipeline a flag could be added to, and why it cannot when it cannot ("" when it can)."""

    pipeline: ReleasePipeline
    reason: str = ""


# --- Guards ---------------------------------------------------------------------------------------


def require_editor(actor: Actor, project_id: int) -> None:
    """Viewers change nothing (the views check too; this keeps other callers honest)."""
    if actor.kind != "user":
        return
    user = db.session.get(User, actor.user_id)
    role = access.role_in(user, project_id) if user else None
    if role is None:
        raise NotFound("Project not found.")
    if not access.can(role, "editor"):
        raise Forbidden("Only editors and admins change flags in pipelines.")


def published_pipeline(project_id: int, pipeline_id: int) -> ReleasePipeline:
    """The project's pipeline if it takes flags, its stages and their actions loaded (three
    reads, whatever the number of stages); NotFound or Conflict (saying why) otherwise."""
    pipeline = db.session.get(ReleasePipeline, pipeline_id, populate_existing=True, options=[
        selectinload(ReleasePipeline.stages).selectinload(PipelineStage.actions)])
    if pipeline is None or pipeline.project_id != project_id:
        raise NotFound("Pipeline not found.")
    if pipeline.deleted_at is not None:
        raise Conflict(f"The pipeline “{pipeline.name}” was deleted; it takes no flags.")
    if pipeline.status != "published":
        raise Conflict(f"The pipeline “{pipeline.name}” is a draft: publish it before adding "
                       "flags.")
    if not pipeline.stages:
        raise Conflict(f"The pipeline “{pipeline.name}” has no stages.")
    return pipeline


# --- Who can join ---------------------------------------------------------------------------------


def type_problem(stages: Sequence[PipelineStage], value_type: str) -> str:
    """Why a flag of `value_type` cannot go through these stages ("" when it can): every action
    whose value it cannot take, named by stage and action."""
    clashes = [
        f"stage {stage.position + 1} ({stage.name}) sets the value {show_value(action.value)}"
        for stage in stages for action in stage.actions
        if action.sets_value and action.value is not None
        and not value_fits(value_type, action.value)
    ]
    if not clashes:
        return ""
    return f"it takes {_TYPE_WORDS.get(value_type, value_type)} values, but " + ", ".join(clashes)


def pipeline_choices(project_id: int, value_type: str) -> list[PipelineChoice]:
    """The project's published pipelines for a flag of `value_type`: those it can join first
    (by name), then the others with the reason it cannot."""
    pipelines = list(db.session.scalars(
        select(ReleasePipeline).where(ReleasePipeline.project_id == project_id,
                                      ReleasePipeline.status == "published",
                                      ReleasePipeline.deleted_at.is_(None))
        .order_by(ReleasePipeline.name, ReleasePipeline.id)))
    choices = [PipelineChoice(p, type_problem(p.stages, value_type) if p.stages
                              else "it has no stages") for p in pipelines]
    return sorted(choices, key=lambda c: bool(c.reason))


def flag_choices(project_id: int, pipeline: ReleasePipeline) -> list[tuple[Feature, str]]:
    """The project's flags in no pipeline, with the reason each cannot join `pipeline` ("" when
    it can): what the pipeline page's checklist offers. One query; the type check runs once per
    value type."""
    in_flight = select(PipelineRun.feature_id).where(PipelineRun.project_id == project_id,
                                                     PipelineRun.ended_at.is_(None))
    flags = list(db.session.scalars(
        select(Feature).where(Feature.project_id == project_id, Feature.id.not_in(in_flight))
        .order_by(Feature.name, Feature.id)))
    by_type: dict[str, str] = {}
    for flag in flags:
        if flag.value_type not in by_type:
            by_type[flag.value_type] = type_problem(pipeline.stages, flag.value_type)
    return [(flag, by_type[flag.value_type]) for flag in flags]


# --- Adding ---------------------------------------------------------------------------------------


def add_flags(project: Project, pipeline_id: int, feature_ids: Iterable[Any], actor: Actor, *,
              all_or_nothing: bool = False) -> AddReport:
    """Add the chosen flags to a published pipeline; each enters the first stage at once.

    Every flag that can join is added; each other one is reported in the answer with its
    reason (not of this project, already in a pipeline, a value type the pipeline's values do
    not fit). With `all_or_nothing`, any such flag refuses the whole request instead (Invalid
    naming every flag and reason, or Conflict when flags are already in a pipeline).

    Refuses the whole request (nothing added): viewers (Forbidden), a foreign or unknown
    pipeline (NotFound), a draft, deleted or empty pipeline (Conflict), no flag chosen (Invalid).
    Audits RELEASE_PIPELINE_FEATURE_ADDED per flag added (one INSERT per batch, webhooks told
    as `audit.record` tells them). Returns the
    report; the caller rings its bells after this commit.
    """
    ids = _ids(feature_ids)
    for attempt in range(RACE_RETRIES + 1):
        try:
            return _add(project, pipeline_id, ids, actor, all_or_nothing)
        except IntegrityError:  # another request added one of them first (one run per flag)
            db.session.rollback()
            if attempt == RACE_RETRIES:
                raise Conflict("Some of these flags were just added to a release pipeline by "
                               "someone else; look again and retry.") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _ids(feature_ids: Iterable[Any]) -> list[int]:
    ids: list[int] = []
    for raw in feature_ids:
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            raise Invalid("Not a flag.", {"feature_ids": ["Choose flags of this project only."]}
                          ) from None
    return list(dict.fromkeys(ids))


def _add(project: Project, pipeline_id: int, ids: list[int], actor: Actor,
         all_or_nothing: bool) -> AddReport:
    project_id = project.id
    planning.start_writing()
    require_editor(actor, project_id)
    if not ids:
        raise Invalid("Choose at least one flag.", {"feature_ids": ["Choose at least one flag."]})
    pipeline = published_pipeline(project_id, pipeline_id)
    stages = list(pipeline.stages)
    report = AddReport(pipeline.id, pipeline.name)

    flags: dict[int, tuple[str, str, int]] = {}
    busy: dict[int, str] = {}
    for chunk in _chunks(ids, READ_CHUNK):
        flags.update((fid, (name, value_type, owner)) for fid, name, value_type, owner in
                     db.session.execute(select(Feature.id, Feature.name, Feature.value_type,
                                               Feature.project_id)
                                        .where(Feature.id.in_(chunk))))
        busy.update(db.session.execute(
            select(PipelineRun.feature_id, ReleasePipeline.name)
            .join(ReleasePipeline, ReleasePipeline.id == PipelineRun.pipeline_id)
            .where(PipelineRun.feature_id.in_(chunk), PipelineRun.ended_at.is_(None))
        ).all())
    type_problems: dict[str, str] = {}
    joining: list[int] = []
    reasons: dict[int, str] = {}
    for fid in ids:
        if fid not in flags or flags[fid][2] != project_id:
            reasons[fid] = "not a flag of this project"
            continue
        name, value_type, _owner = flags[fid]
        if fid in busy:
            reasons[fid] = ("already in this pipeline" if busy[fid] == pipeline.name
                            else f"already in the pipeline “{busy[fid]}”")
            continue
        if value_type not in type_problems:
            type_problems[value_type] = type_problem(stages, value_type)
        if type_problems[value_type]:
            reasons[fid] = type_problems[value_type]
            continue
        joining.append(fid)
    if all_or_nothing and reasons:
        _refuse(ids, flags, reasons, busy, project_id)

    moment = clock_now()
    run_ids = _insert(project_id, pipeline, stages, joining,
                      {fid: flags[fid][0] for fid in joining}, actor, moment)
    first = stages[0]
    due = _due(first, moment)
    for fid in ids:
        if fid in reasons:
            report.outcomes.append(
                FlagOutcome(fid, _name(flags, fid, project_id), False, reasons[fid]))
        else:
            report.outcomes.append(FlagOutcome(fid, flags[fid][0], True, run_id=run_ids[fid]))
            report.bells.append(Bell(run_ids[fid], 1, due))
    db.session.commit()
    return report


def _refuse(ids: list[int], flags: dict[int, tuple[str, str, int]], reasons: dict[int, str],
            busy: dict[int, str], project_id: int) -> None:
    """The all-or-nothing answer: every flag that cannot join, named, with its reason."""
    db.session.rollback()
    named = [f"{_name(flags, fid, project_id)}: {reasons[fid]}" for fid in ids if fid in reasons]
    if all(fid in busy for fid in reasons):
        raise Conflict("Already in a release pipeline: " + "; ".join(named) + ".")
    raise Invalid("Nothing was added. " + "; ".join(named) + ".", {"feature_ids": named})


def _name(flags: dict[int, tuple[str, str, int]], fid: int, project_id: int) -> str:
    """A chosen flag's name; another project's flag is never named (it might not exist)."""
    return flags[fid][0] if fid in flags and flags[fid][2] == project_id else f"#{fid}"


def _due(first: PipelineStage, moment: datetime) -> datetime:
    # A guarded stage applies at once; its wait is the bake (services/gates.py).
    waits = first.trigger_type == "WAIT_FOR" and not first.checks
    wait = (first.wait_seconds or 0) if waits else 0
    return moment + timedelta(seconds=wait)


def _insert(project_id: int, pipeline: ReleasePipeline, stages: list[PipelineStage],
            joining: list[int], names: dict[int, str], actor: Actor,
            moment: datetime) -> dict[int, int]:
    """Insert the runs, their first stage entries and their audit entries; {feature id: run id}.

    Each is an INSERT ... SELECT over the chosen flags' ids, BATCH ids per statement: only the
    flag differs from row to row, so a statement carries one parameter per flag instead of one
    per column and flag (psycopg parses every placeholder of a statement in Python)."""
    if not joining:
        return {}
    first = stages[0]
    due = _due(first, moment)
    words = describe.stage_snapshot(pipeline.id)  # the track shows these, whatever comes later
    run_table, execution_table, entry_table = (table_of(PipelineRun), table_of(StageExecution),
                                               table_of(AuditEntry))
    runs, executions, entries = run_table.c, execution_table.c, entry_table.c
    run_ids: dict[int, int] = {}
    for chunk in _chunks(joining, BATCH):
        made: dict[int, int] = {}
        made.update(db.session.execute(_insert_select(run_table, Feature, {
            runs.project_id: project_id, runs.pipeline_id: pipeline.id,
            runs.feature_id: Feature.id, runs.stage_id: first.id, runs.stage_position: 0,
            runs.status: "waiting", runs.entered_at: moment, runs.due_at: due,
            runs.lease_until: due + planning.LEASE_GRACE, runs.version: 1, runs.attempts: 0,
            runs.added_by_id: actor.user_id, runs.created_at: moment, runs.stages: words,
        }, Feature.id.in_(chunk)).returning(runs.feature_id, runs.id)).all())
        run_ids.update(made)
        in_chunk = (PipelineRun.pipeline_id == pipeline.id, PipelineRun.ended_at.is_(None),
                    PipelineRun.feature_id.in_(chunk))
        db.session.execute(_insert_select(execution_table, PipelineRun, {
            executions.run_id: PipelineRun.id, executions.stage_id: first.id,
            executions.position: 0, executions.entered_at: moment, executions.snapshot: {},
        }, *in_chunk))
        db.session.execute(_insert_select(entry_table, PipelineRun, {
            entries.created_at: moment,
            entries.organisation_id: actor.organisation_id, entries.project_id: project_id,
            entries.actor_type: actor.kind, entries.actor_user_id: actor.user_id,
            entries.actor_api_key_id: actor.api_key_id, entries.actor_label: actor.label,
            entries.event_type: "RELEASE_PIPELINE_FEATURE_ADDED",
            entries.object_type: "feature", entries.object_id: Feature.id,
            entries.object_label: Feature.name,
            entries.message: Feature.name + literal(f" added to release pipeline {pipeline.name}"),
            entries.after: {"pipeline": pipeline.name, "stage": first.name},
            entries.pipeline_id: pipeline.id, entries.feature_id: Feature.id,
            entries.run_id: PipelineRun.id,
        }, *in_chunk, join=(Feature, Feature.id == PipelineRun.feature_id)))
        webhook_events.from_audit(actor, [{
            "event_type": "RELEASE_PIPELINE_FEATURE_ADDED", "project_id": project_id,
            "message": f"{names[fid]} added to release pipeline {pipeline.name}",
            "run_id": made[fid], "change_request_id": None, "idempotency_key": None,
        } for fid in chunk])
    return run_ids


def _insert_select(table: Table, source: Any, values: dict[Column[Any], Any], *where: Any,
                   join: tuple[Any, Any] | None = None) -> Insert:
    """INSERT INTO table (columns) SELECT values FROM source WHERE ...: constants become
    bound parameters of the column's type, column expressions are read from the rows."""
    columns = list(values)
    selected = [value if isinstance(value, ColumnElement | QueryableAttribute)
                else literal(value, type_=column.type) for column, value in values.items()]
    query = select(*selected).select_from(source)
    if join is not None:
        query = query.join(*join)
    return insert(table).from_select([c.name for c in columns], query.where(*where))


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
