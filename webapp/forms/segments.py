"""The segment form and the rule builder's encoding of a rule tree as form fields.

Input names are the tree paths of `webapp.services.platform.segments`: `r0.type`, `r0.c1.property`,
`r0.c1.operator`, `r0.c1.value`, `r0.r0.type` (a nested rule), and so on.
"""

import re
from collections.abc import Mapping
from typing import Any

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import Optional

from webapp.parsing import ascii_int
from webapp.services.platform.segments import MAX_DEPTH

# A rule one level deeper than segments allow is still read (so that its 422 says so); fields
# below it, and indexes beyond MAX_INDEX, are ignored: no form can build a tree too deep or too
# sparse to render again.
MAX_INDEX = 10_000
_FIELD = re.compile(rf"^(r\d{{1,4}}(?:\.r\d{{1,4}}){{0,{MAX_DEPTH}}})\."
                    r"(?:(type)|c(\d{1,4})\.(property|operator|value))$", re.ASCII)
_STEP = re.compile(r"r(\d+)", re.ASCII)


class SegmentForm(FlaskForm):
    # Limits are checked by the service so all messages come in one answer.
    name = StringField("Name", validators=[Optional()])
    description = TextAreaField("Description", validators=[Optional()])


def _rule_at(tree: dict[int, Any], path: str) -> dict[str, Any]:
    node: dict[str, Any] = {"rules": tree}
    for index in (int(i) for i in _STEP.findall(path)):
        node = node["rules"].setdefault(index, {"type": None, "conditions": {}, "rules": {}})
    return node


def _ordered(rules: dict[int, Any]) -> list[dict[str, Any]]:
    return [{"type": rule["type"],
             "conditions": [rule["conditions"][i] for i in sorted(rule["conditions"])],
             "rules": _ordered(rule["rules"])}
            for _index, rule in sorted(rules.items())]


def rules_from_form(form: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rebuild the rule tree from the builder's fields (indexes give the order; gaps are fine)."""
    tree: dict[int, Any] = {}
    for key in form:
        match = _FIELD.match(key)
        if not match:
            continue
        path, is_type, condition, attribute = match.groups()
        rule = _rule_at(tree, path)
        if is_type:
            rule["type"] = form[key]
        else:
            slot = rule["conditions"].setdefault(
                int(condition), {"property": "", "operator": "", "value": ""}
            )
            slot[attribute] = form[key]
    return _ordered(tree)


def _node(rules: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] = {"rules": rules}
    for index in (int(i) for i in _STEP.findall(path)):
        children = node.get("rules") or []
        if index >= len(children):
            return None
        node = children[index]
    return node


def _new_condition() -> dict[str, Any]:
    return {"property": "", "operator": "EQUAL", "value": ""}


def _new_rule(rule_type: str = "ALL") -> dict[str, Any]:
    return {"type": rule_type, "conditions": [_new_condition()], "rules": []}


def apply_builder_op(rules: list[dict[str, Any]], op: str) -> list[dict[str, Any]]:
    """One edit of the builder, not saved: `add_rule`, `add_condition:<rule path>`,
    `add_nested:<rule path>`, `remove_rule:<rule path>`, `remove_condition:<rule path>.c<i>`.
    Unknown or stale operations leave the tree as it is."""
    action, _, path = (op or "").partition(":")
    if action == "add_rule":
        rules.append(_new_rule())
    elif action in ("add_condition", "add_nested"):
        node = _node(rules, path) if path else None
        if node is not None:
            if action == "add_condition":
                node.setdefault("conditions", []).append(_new_condition())
            else:
                node.setdefault("rules", []).append(_new_rule("ANY"))
    elif action == "remove_rule" and path:
        parent_path, _, last = path.rpartition(".")
        parent = _node(rules, parent_path) if parent_path else {"rules": rules}
        index = ascii_int(last[1:], below=MAX_INDEX)
        index = -1 if index is None else index
        if parent is not None and 0 <= index < len(parent.get("rules") or []):
            parent["rules"].pop(index)
    elif action == "remove_condition" and path:
        rule_path, _, last = path.rpartition(".")
        node = _node(rules, rule_path)
        index = ascii_int(last[1:], below=MAX_INDEX)
        index = -1 if index is None else index
        if node is not None and 0 <= index < len(node.get("conditions") or []):
            node["conditions"].pop(index)
    return rules


def starter_rules() -> list[dict[str, Any]]:
    return [_new_rule()]
