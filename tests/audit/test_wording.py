"""The audit log's words: every event type has a label and a sentence, names replace ids, and
the names of a page are looked up in a fixed number of queries."""

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import event

from webapp.extensions import db
from webapp.models import Segment
from webapp.services.actors import Actor
from webapp.services.governance import audit_log, audit_reading, audit_wording
from webapp.services.governance.audit_log import AuditFilter, DiffLine
from webapp.services.governance.audit_names import Names
from webapp.services.platform import segments

ROOT = Path(__file__).resolve().parents[2]
RULES = [{"type": "ALL", "conditions": [{"property": "plan", "operator": "EQUAL",
                                         "value": "pro"}], "rules": []}]
CONSTANT = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
# Calls that write audit entries, and the names of their event type parameters.
WRITERS = {"record", "record_many", "audit_pipeline", "_audit", "_event", "apply_change",
           "apply_changes", "roll_back_locked", "record_edit"}
EVENT_PARAMETERS = {"event", "event_type"}

# Every field a sentence may use, with a name, so each sentence renders whole.
FULL = {"actor": "ann@example.com", "feature": "dark_mode", "pipeline": "Standard rollout",
        "environment": "Production", "segment": "Beta testers", "object": "thing",
        "change_request": "#7 “dark_mode: on in Production”", "target": "for segment Beta testers",
        "toggle": "enabled", "percent": "50", "old_percent": "25", "role": "editor",
        "old_role": "viewer", "rotated": "client-side key", "source": "Old pipeline",
        "comment": ": “looks good”", "reason": " (the flag was rolled back)",
        "note": "stage 2 (Beta) added"}


@pytest.mark.parametrize("event_type", sorted(audit_wording.WORDING))
def test_every_event_type_reads_as_words(event_type):
    label = audit_wording.label(event_type)
    assert label and label[0].isupper() and not CONSTANT.match(label)
    assert len(label) <= 32, "the filter shows labels whole: keep them short"
    text = audit_wording.sentence(event_type, FULL, "stored message")
    assert text and "{" not in text and "}" not in text
    assert audit_wording.UNKNOWN not in text and "#None" not in text
    assert event_type not in text
    # Fields left empty never crash a sentence (an old entry lacks them).
    assert audit_wording.sentence(event_type, {}, "") != ""


def _values(expr: ast.expr, assigned: dict[str, list[ast.expr]], depth: int = 0) -> list[str]:
    """The event type constants an expression can be: a literal, an f-string's constant start
    (as "PREFIX*"), either branch of a conditional, or what a name is assigned."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr.value] if CONSTANT.match(expr.value) else []
    if isinstance(expr, ast.JoinedStr) and expr.values and isinstance(
            expr.values[0], ast.Constant) and str(expr.values[0].value).isupper():
        return [f"{expr.values[0].value}*"]
    if isinstance(expr, ast.IfExp):
        return _values(expr.body, assigned, depth) + _values(expr.orelse, assigned, depth)
    if isinstance(expr, ast.Name) and depth < 3:
        return [v for value in assigned.get(expr.id, [])
                for v in _values(value, assigned, depth + 1)]
    return []


def _written_event_types() -> dict[str, set[str]]:
    """Event types passed to the audit writers anywhere in webapp/ and jobs/: string constants
    (or the constant prefix of an f-string), directly or through a name assigned in the module
    or a parameter's default. {event type or "PREFIX*": {files}}."""
    found: dict[str, set[str]] = {}
    paths = [*ROOT.joinpath("webapp").rglob("*.py"), *ROOT.joinpath("jobs").rglob("*.py")]
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in paths}
    # Module constants (EVENT_BY_PIPELINE = "...") are imported across modules: a name not
    # assigned in the module itself is looked up among every module's constants.
    constants: dict[str, list[ast.expr]] = {}
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.isupper():
                        constants.setdefault(target.id, []).append(node.value)
    for path, tree in trees.items():
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.FunctionDef):
                arguments = node.args.args + node.args.kwonlyargs
                defaults = ([None] * (len(node.args.args) - len(node.args.defaults))
                            + list(node.args.defaults) + list(node.args.kw_defaults))
                for argument, default in zip(arguments, defaults, strict=True):
                    if argument.arg in EVENT_PARAMETERS and default is not None:
                        assigned.setdefault(argument.arg, []).append(default)

        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", "")
            if name not in WRITERS:
                continue
            candidates = list(node.args) + [k.value for k in node.keywords
                                            if k.arg in EVENT_PARAMETERS]
            for argument in node.args:  # record_many([{"event_type": ...}, ...])
                for inner in ast.walk(argument):
                    if isinstance(inner, ast.Dict):
                        candidates += [v for k, v in zip(inner.keys, inner.values, strict=True)
                                       if isinstance(k, ast.Constant) and k.value == "event_type"]
            for candidate in candidates:
                for value in _values(candidate, {**constants, **assigned}):
                    found.setdefault(value, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_event_type_written_has_wording():
    written = _written_event_types()
    # The scan sees each way the writers name an event type: a literal, a module constant
    # (change requests), a local conditional, a parameter default and an f-string.
    for sample in ("FEATURE_CREATED", "CHANGE_REQUEST_OPENED", "RELEASE_PIPELINE_FEATURE_LAUNCHED",
                   "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", "RELEASE_PIPELINE_UPDATED",
                   "RELEASE_PIPELINE_FEATURE_ROLLED_BACK", "SEGMENT_OVERRIDE_*",
                   "RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY", "HEALTH_CHECK_FAILED"):
        assert sample in written, sample
    missing = {}
    for event_type, files in written.items():
        if event_type.endswith("*"):
            known = any(e.startswith(event_type[:-1]) for e in audit_wording.WORDING)
        else:
            known = event_type in audit_wording.WORDING
        if not known:
            missing[event_type] = sorted(files)
    assert not missing, ("Add a line to audit_wording.WORDING for each of these event types: "
                         f"{missing}")


def test_an_unknown_event_type_still_reads():
    assert audit_wording.label("SOMETHING_NEW_HAPPENED") == "Something new happened"
    assert audit_wording.sentence("SOMETHING_NEW_HAPPENED", {}, "It happened") == "It happened"


# --- names instead of ids ------------------------------------------------------------------------


@pytest.fixture
def named(project, make, log):
    dark = make.feature(project, "dark_mode")
    _dev, _staging, prod = make.environments(project)
    pipeline = log.pipeline(project, "Standard rollout")
    actor = Actor.for_user(make.user(email="pm@example.com"))
    beta = segments.create_segment(project, "Beta testers", RULES, actor)
    internal = segments.create_segment(project, "Internal", RULES, actor)
    return {"dark": dark, "prod": prod, "pipeline": pipeline, "beta": beta,
            "internal": internal}


def read(project):
    return audit_log.page(project.id, AuditFilter(), masked=False).entries


def test_a_pipeline_change_for_a_segment_names_the_segment(project, log, named):
    beta = named["beta"]
    log.entry(project, "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
              f"dark_mode enabled for segment #{beta.id}", object_type="segment_override",
              object_id=named["dark"].id, object_label="dark_mode", feature_id=named["dark"].id,
              environment_id=named["prod"].id, pipeline_id=named["pipeline"].id,
              actor=Actor.for_pipeline("Standard rollout"), before=None,
              after={"enabled": True, "value": None, "priority": 0, "segment_id": beta.id})
    [entry] = [e for e in read(project) if e.event_type.startswith("FEATURE_STATE")]
    assert entry.label == "Flag changed by a pipeline"
    assert entry.sentence == ("dark_mode enabled for segment Beta testers in Production by "
                              "pipeline Standard rollout")
    assert DiffLine("segment", None, "Beta testers") in entry.diff
    assert DiffLine("on/off", None, "on") in entry.diff


def test_an_id_change_reads_as_names_and_a_deleted_segment_keeps_its_last_name(
        project, log, named, make):
    beta, internal = named["beta"], named["internal"]
    log.entry(project, "RELEASE_PIPELINE_UPDATED", "Release pipeline Standard rollout: action",
              object_type="release_pipeline", object_id=named["pipeline"].id,
              object_label="Standard rollout", pipeline_id=named["pipeline"].id,
              before={"segment_id": beta.id}, after={"segment_id": internal.id})
    [entry] = [e for e in read(project) if e.event_type == "RELEASE_PIPELINE_UPDATED"]
    assert entry.diff == [DiffLine("segment", "Beta testers", "Internal")]

    segments.delete_segment(db.session.get(Segment, internal.id),
                            Actor.for_user(make.user(email="ops@example.com")))
    [entry] = [e for e in read(project) if e.event_type == "RELEASE_PIPELINE_UPDATED"]
    assert entry.diff == [DiffLine("segment", "Beta testers", "Internal (deleted)")]


def test_an_id_nobody_recorded_reads_as_deleted(project, log, named):
    log.entry(project, "RELEASE_PIPELINE_UPDATED", "x", object_type="release_pipeline",
              pipeline_id=named["pipeline"].id, before={"segment_id": 987654},
              after={"segment_id": named["beta"].id})
    [entry] = [e for e in read(project) if e.event_type == "RELEASE_PIPELINE_UPDATED"]
    assert entry.diff == [DiffLine("segment", "#987654 (deleted)", "Beta testers")]


def test_a_change_request_diff_is_a_list_of_named_changes(project, log, named):
    beta, prod = named["beta"], named["prod"]
    log.entry(project, "CHANGE_REQUEST_OPENED", "Change request #1 opened: x",
              object_type="change_request", object_id=1, object_label="#1 x",
              feature_id=named["dark"].id, environment_id=prod.id,
              after={"changes": [
                  {"kind": "state", "environment_id": prod.id, "feature_id": named["dark"].id,
                   "enabled": True, "before": {"enabled": False, "value": "a"},
                   "after": {"enabled": True, "value": "a"}},
                  {"kind": "override", "environment_id": prod.id, "segment_id": beta.id,
                   "feature_id": named["dark"].id, "value": "long " * 40,
                   "before": None, "after": {"enabled": True, "value": "long " * 40}},
                  {"kind": "remove_override", "environment_id": prod.id,
                   "segment_id": named["internal"].id, "feature_id": named["dark"].id,
                   "before": {"enabled": True, "value": None}, "after": None},
              ]})
    [entry] = [e for e in read(project) if e.event_type == "CHANGE_REQUEST_OPENED"]
    assert entry.label == "Change request opened"
    assert entry.sentence.endswith("opened for dark_mode in Production")
    assert entry.diff[0] == DiffLine("Production · everyone · on/off", "off", "on")
    assert entry.diff[1] == DiffLine("Production · segment Beta testers · on/off", None, "on")
    assert entry.diff[2].key == "Production · segment Beta testers · value"
    assert entry.diff[2].after == f"“{'long ' * 40}”" and entry.diff[2].long  # folded, whole
    assert entry.diff[3] == DiffLine("Production · segment Internal", "on", "override removed")


def test_a_page_resolves_its_names_in_a_fixed_number_of_queries(project, log, named, app):
    def queries_for_a_page_of(count):
        for n in range(count):
            segment = segments.create_segment(project, f"Segment {n} of {count}", RULES,
                                              Actor("user", "x@example.com"))
            log.entry(project, "SEGMENT_OVERRIDE_UPDATED", "override", object_type=
                      "segment_override", object_id=named["dark"].id,
                      feature_id=named["dark"].id, environment_id=named["prod"].id,
                      before={"enabled": False}, after={"enabled": True,
                                                        "segment_id": segment.id})
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            entries = read(project)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        assert all("Segment " in e.sentence for e in entries
                   if e.event_type == "SEGMENT_OVERRIDE_UPDATED")
        return len(statements)

    assert queries_for_a_page_of(3) == queries_for_a_page_of(20)


def test_the_diff_words_for_builder_fields():
    names = Names()
    lines = audit_reading.diff(
        {"Stage 2 · trigger_type": "ON_ENTER", "Stage 2 · wait_seconds": None},
        {"Stage 2 · trigger_type": "WAIT_FOR", "Stage 2 · wait_seconds": 86400,
         "Stage 3": {"name": "Prod", "actions": []}}, names)
    assert lines[0] == DiffLine("Stage 2 · trigger", "when the flag enters the stage",
                                "after a wait")
    assert lines[1].key == "Stage 2 · wait" and lines[1].before == "none"
    assert "day" in (lines[1].after or "")
    assert DiffLine("Stage 3 · name", None, "Prod") in lines
