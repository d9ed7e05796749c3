"""Flag evaluation with `flagsmith-flag-engine`, from the same environment document the SDKs
download, so that remote evaluation here and an SDK's local evaluation agree exactly.

The mapping from document to engine context mirrors the official Python SDK's
(`flagsmith.mappers.map_environment_document_to_context`): segment keys are segment ids (the
percentage split hashes on them), and the identity key is `<client key>_<identifier>`, which
the engine derives from the environment key.

REGEX conditions are matched with RE2, in time linear in the trait value (see
`webapp.services.platform.regexes`): the engine looks each operator up in its `MATCHERS_BY_OPERATOR`
table when it evaluates a condition, and Railyard registers its own REGEX entry there, with the
engine's contract (the condition's value as pattern, the trait's context value as text, a
match at the start). Everything else (which value a property reads, JSONPath, flags that
segments read) stays the engine's.
"""

from typing import Any

from flag_engine.context.types import EvaluationContext, FeatureContext, SegmentRule
from flag_engine.engine import get_evaluation_result
from flag_engine.segments import constants as engine_operators
from flag_engine.segments import evaluator as engine_evaluator

from webapp.services.platform import regexes

TRAIT_VALUE_TYPES = (str, int, float, bool)


def _match_regex(segment_value: str | None, context_value: Any) -> bool:
    return context_value is not None and regexes.matches(str(segment_value), str(context_value))


if engine_operators.REGEX not in engine_evaluator.MATCHERS_BY_OPERATOR:  # pragma: no cover
    raise ImportError("flagsmith-flag-engine no longer matches REGEX through "
                      "MATCHERS_BY_OPERATOR: route REGEX through RE2 another way.")
engine_evaluator.MATCHERS_BY_OPERATOR[engine_operators.REGEX] = _match_regex


def _rules(rules: list[dict[str, Any]]) -> list[SegmentRule]:
    return [
        {
            "type": rule["type"],
            "conditions": [
                {
                    "property": condition.get("property_") or "",
                    "operator": condition["operator"],
                    "value": condition["value"],
                }
                for condition in rule.get("conditions", [])
            ],
            "rules": _rules(rule.get("rules", [])),
        }
        for rule in rules
    ]


def _feature_contexts(feature_states: list[dict[str, Any]]) -> list[FeatureContext]:
    contexts = []
    for state in feature_states:
        context: FeatureContext = {
            "key": str(state.get("django_id") or state["featurestate_uuid"]),
            "name": state["feature"]["name"],
            "enabled": state["enabled"],
            "value": state["feature_state_value"],
            "metadata": {"id": state["feature"]["id"]},
        }
        if segment := state.get("feature_segment"):
            context["priority"] = segment["priority"]
        contexts.append(context)
    return contexts


def context_from_document(document: dict[str, Any]) -> EvaluationContext:
    """The engine's evaluation context for an environment document (no identity)."""
    return {
        "environment": {"key": document["api_key"], "name": document["name"]},
        "features": {c["name"]: c for c in _feature_contexts(document["feature_states"])},
        "segments": {
            str(segment["id"]): {
                "key": str(segment["id"]),
                "name": segment["name"],
                "rules": _rules(segment["rules"]),
                "overrides": _feature_contexts(segment.get("feature_states") or []),
                "metadata": {"id": segment["id"], "source": "api"},
            }
            for segment in document["project"]["segments"]
        },
    }


def deciding(context: EvaluationContext) -> EvaluationContext:
    """The context without what cannot change an identity's flags: segments that override no
    flag (matching them was most of an identify's evaluation time) and, unless a condition
    reads the context by JSONPath (`$.…`, which can read other flags), the flags no segment
    overrides (the engine would evaluate each to its environment default, which the answer
    already holds)."""
    segments = {key: segment for key, segment in context["segments"].items()
                if segment["overrides"]}
    features = context["features"]
    if not any(_reads_context(rule) for segment in segments.values()
               for rule in segment["rules"]):
        overridden = {override["name"] for segment in segments.values()
                      for override in segment["overrides"]}
        features = {name: feature for name, feature in features.items() if name in overridden}
    return {**context, "segments": segments, "features": features}


def _reads_context(rule: SegmentRule) -> bool:
    return (any(condition["property"].startswith("$") for condition in rule.get("conditions", []))
            or any(_reads_context(inner) for inner in rule.get("rules", [])))


def trait_keys_read(context: EvaluationContext) -> tuple[str, ...] | None:
    """The trait keys the context's segment conditions read, when an identity's flags depend on
    nothing else (so identities with the same values of these traits get the same flags); None
    when they may depend on the identifier too: a percentage split, a condition that reads the
    context by JSONPath (`$.identity.identifier`, …) or a flag with variants (split by the
    identity's key)."""
    keys: set[str] = set()
    features = [*context.get("features", {}).values(),
                *(override for segment in context.get("segments", {}).values()
                  for override in segment.get("overrides") or [])]
    if any(feature.get("variants") for feature in features):
        return None
    rules = [rule for segment in context.get("segments", {}).values() for rule in segment["rules"]]
    while rules:
        rule = rules.pop()
        for condition in rule.get("conditions") or []:
            if (condition["operator"] == engine_operators.PERCENTAGE_SPLIT
                    or condition["property"].startswith("$")):
                return None
            keys.add(condition["property"])
        rules.extend(rule.get("rules") or [])
    return tuple(sorted(keys))


def identity_flags(context: EvaluationContext, identifier: str,
                   traits: dict[str, Any]) -> dict[str, tuple[bool, Any]]:
    """{feature name: (enabled, value)} of the flags a segment override decides for this
    identity; the others keep their environment default.

    Segments (including hidden phased-rollout segments) are matched on the traits; the
    matching override with the lowest priority wins.
    """
    result = get_evaluation_result({
        **context,
        "identity": {"identifier": identifier, "traits": dict(traits)},
    })
    return {name: (flag["enabled"], flag["value"]) for name, flag in result["flags"].items()
            if flag["reason"].startswith("TARGETING_MATCH")}
