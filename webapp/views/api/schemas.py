"""Request and response shapes of the admin API (marshmallow), following Flagsmith's admin API
where it has one. Requests are loaded (validated) with them; the OpenAPI document is built
from them."""

from typing import Any

from marshmallow import Schema, fields, pre_load, validate

from webapp.models import VALUE_TYPES
from webapp.services.platform.segments import MAX_DEPTH, OPERATORS, RULE_TYPES
from webapp.views.api.common import Id, PageSchema, Shape

NAME = validate.Length(min=1, max=255)
Value = fields.Raw(allow_none=True, metadata={
    "description": "A string, integer or boolean (or null), as the flag's type allows."})


# --- projects and environments ---

class ProjectSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    organisation = fields.Integer(required=True)
    created_date = fields.String(allow_none=True)


class ProjectCreateSchema(Shape):
    name = fields.String(required=True, validate=NAME)
    organisation = Id(load_default=None, allow_none=True)


class EnvironmentSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    api_key = fields.String(required=True)
    project = fields.Integer(required=True)
    minimum_change_request_approvals = fields.Integer(required=True)


class EnvironmentCreateSchema(Shape):
    name = fields.String(required=True, validate=NAME)
    project = Id(required=True)


class ServerKeySchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True)
    active = fields.Boolean(required=True)
    created_at = fields.String(required=True)
    expires_at = fields.String(allow_none=True)


class ServerKeyCreatedSchema(ServerKeySchema):
    key = fields.String(required=True, metadata={"description": "Shown once: store it now."})


class ServerKeyCreateSchema(Shape):
    name = fields.String(required=True, validate=NAME)


class LoginSchema(Shape):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class LoginTokenSchema(Shape):
    key = fields.String(required=True, metadata={"description": "Send as `Authorization: Token "
                                                                "<key>`."})


class EnvironmentUpdateSchema(Shape):
    name = fields.String(validate=NAME)
    minimum_change_request_approvals = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0, max=100))


# --- features ---

class FeatureSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    type = fields.String(required=True)
    value_type = fields.String(required=True)
    default_enabled = fields.Boolean(required=True)
    initial_value = Value
    tags = fields.List(fields.String())
    project = fields.Integer(required=True)
    created_date = fields.String(allow_none=True)


class FeatureCreateSchema(Shape):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(load_default="", validate=validate.Length(max=20_000))
    value_type = fields.String(load_default=None, validate=validate.OneOf(VALUE_TYPES),
                               metadata={"description": "Inferred from initial_value if absent."})
    default_enabled = fields.Boolean(load_default=False)
    initial_value = fields.Raw(load_default=None, allow_none=True)


class FeatureUpdateSchema(Shape):
    description = fields.String(validate=validate.Length(max=2000))
    tags = fields.List(fields.String(validate=validate.Length(max=100)),
                       validate=validate.Length(max=50))


# --- segments ---

class ConditionSchema(Shape):
    property = fields.String(load_default="", validate=validate.Length(max=1000))
    operator = fields.String(required=True, validate=validate.OneOf(OPERATORS))
    value = fields.Raw(load_default=None, allow_none=True)


class RuleSchema(Shape):
    type = fields.String(required=True, validate=validate.OneOf(RULE_TYPES))
    rules = fields.List(fields.Nested(lambda: RuleSchema()), load_default=list)
    conditions = fields.List(fields.Nested(ConditionSchema), load_default=list)


def _cut_too_deep(rules: Any, depth: int = 1) -> Any:
    """The rule tree with nothing below the first level deeper than segments allow: the service
    refuses that level (422, by path), and loading 200 levels of nested schemas would run
    marshmallow out of stack first."""
    if not isinstance(rules, list):
        return rules
    return [{**rule, "rules": [] if depth > MAX_DEPTH else _cut_too_deep(rule["rules"], depth + 1)}
            if isinstance(rule, dict) and "rules" in rule else rule
            for rule in rules]


class _BoundedRules:
    @pre_load
    def _bound_depth(self, data: Any, **_kwargs: Any) -> Any:
        if isinstance(data, dict) and "rules" in data:
            return {**data, "rules": _cut_too_deep(data["rules"])}
        return data


class SegmentSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    project = fields.Integer(required=True)
    rules = fields.List(fields.Nested(RuleSchema), required=True)


class SegmentUpdateSchema(_BoundedRules, Shape):
    name = fields.String(validate=NAME)
    description = fields.String(validate=validate.Length(max=20_000))
    rules = fields.List(fields.Nested(RuleSchema), validate=validate.Length(min=1, max=50))


class SegmentCreateSchema(_BoundedRules, Shape):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(load_default="", validate=validate.Length(max=20_000))
    rules = fields.List(fields.Nested(RuleSchema), required=True,
                        validate=validate.Length(min=1, max=50))


# --- feature states and segment overrides ---

class FeatureStateSchema(Shape):
    id = fields.Integer(required=True)
    feature = fields.Integer(required=True)
    environment = fields.Integer(required=True)
    enabled = fields.Boolean(required=True)
    feature_state_value = Value
    identity = fields.Raw(allow_none=True)
    feature_segment = fields.Raw(allow_none=True)
    updated_at = fields.String(allow_none=True)


class FeatureStateUpdateSchema(Shape):
    enabled = fields.Boolean()
    feature_state_value = fields.Raw(allow_none=True)


class SegmentOverrideSchema(Shape):
    id = fields.Integer(required=True)
    feature = fields.Integer(required=True)
    segment = fields.Integer(required=True)
    environment = fields.Integer(required=True)
    priority = fields.Integer(required=True)
    enabled = fields.Boolean(required=True)
    feature_state_value = Value


class SegmentOverrideCreateSchema(Shape):
    feature = Id(required=True)
    segment = Id(required=True)
    enabled = fields.Boolean(load_default=True)
    feature_state_value = fields.Raw(load_default=None, allow_none=True)
    priority = fields.Integer(load_default=None, allow_none=True, strict=True,
                              validate=validate.Range(min=0, max=1_000_000))


class SegmentOverrideUpdateSchema(Shape):
    enabled = fields.Boolean()
    feature_state_value = fields.Raw(allow_none=True)
    priority = fields.Integer(strict=True, validate=validate.Range(min=0, max=1_000_000))


def page_schema(item: type[Schema]) -> type[Schema]:
    """A paginated list of `item`, as its own named schema."""
    return type(f"{item.__name__.removesuffix('Schema')}PageSchema", (PageSchema,), {
        "results": fields.List(fields.Nested(item), required=True),
    })


# --- SDK API (Flagsmith's wire format) ---

class SdkFeatureSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    created_date = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    initial_value = fields.Raw(allow_none=True)
    default_enabled = fields.Boolean()


class SdkFlagSchema(Shape):
    id = fields.Integer(required=True)
    feature = fields.Nested(SdkFeatureSchema, required=True)
    feature_state_value = Value
    enabled = fields.Boolean(required=True)
    environment = fields.Integer(required=True)
    identity = fields.Raw(allow_none=True)
    feature_segment = fields.Raw(allow_none=True)


class TraitSchema(Shape):
    trait_key = fields.String(required=True)
    trait_value = fields.Raw(allow_none=True)
    transient = fields.Boolean()


class IdentityRequestSchema(Shape):
    # Missing or blank: a transient identity (evaluated on the traits sent, never stored).
    identifier = fields.String(validate=validate.Length(max=2000), allow_none=True)
    traits = fields.List(fields.Nested(TraitSchema))
    transient = fields.Boolean()


class IdentityResponseSchema(Shape):
    identifier = fields.String(required=True)
    flags = fields.List(fields.Nested(SdkFlagSchema), required=True)
    traits = fields.List(fields.Nested(TraitSchema), required=True)


class EnvironmentDocumentSchema(Shape):
    id = fields.Integer(required=True)
    api_key = fields.String(required=True)
    name = fields.String(required=True)
    project = fields.Dict(required=True)
    feature_states = fields.List(fields.Dict(), required=True)
    identity_overrides = fields.List(fields.Dict(), required=True)
    updated_at = fields.String(allow_none=True)
