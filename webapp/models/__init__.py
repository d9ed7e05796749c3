"""All models, importable from one place."""

from webapp.models.calendar import (
    HOLD_KINDS,
    WEEKDAYS,
    DeploymentWindow,
    EnvironmentSchedule,
    Freeze,
    FreezeEnvironment,
    LineStop,
)
from webapp.models.governance import (
    ROLES,
    ApiKey,
    AuditEntry,
    ChangeRequest,
    ChangeRequestReview,
    Membership,
    Notification,
    OutboxMessage,
    User,
)
from webapp.models.health import (
    FiringAlert,
    HealthCheckState,
    ProjectIntegration,
    StageHealthCheck,
)
from webapp.models.integrations import (
    DELIVERY_STATUSES,
    RECEIVER_KINDS,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from webapp.models.pipelines import (
    ACTION_TYPES,
    RUN_ACTIVE_STATUSES,
    RUN_ENDED_STATUSES,
    TRIGGER_TYPES,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageAction,
    StageExecution,
)
from webapp.models.platform import (
    VALUE_TYPES,
    Environment,
    Feature,
    FeatureState,
    FlagEvaluationCount,
    Identity,
    Organisation,
    Project,
    Segment,
    SegmentOverride,
    ServerKey,
)

__all__ = [
    "ACTION_TYPES", "DELIVERY_STATUSES", "RECEIVER_KINDS", "ROLES", "RUN_ACTIVE_STATUSES",
    "RUN_ENDED_STATUSES", "TRIGGER_TYPES",
    "VALUE_TYPES", "ApiKey", "AuditEntry", "ChangeRequest", "ChangeRequestReview",
    "Environment", "Feature", "FeatureState", "FlagEvaluationCount", "Identity", "Membership",
    "Notification",
    "Organisation", "OutboxMessage", "PipelineRun", "PipelineStage", "Project",
    "ReleasePipeline", "Segment", "SegmentOverride", "ServerKey", "StageAction",
    "StageExecution", "User", "Webhook", "WebhookAttempt", "WebhookDelivery",
    "FiringAlert", "HealthCheckState", "ProjectIntegration", "StageHealthCheck",
    "HOLD_KINDS", "WEEKDAYS", "DeploymentWindow", "EnvironmentSchedule", "Freeze",
    "FreezeEnvironment", "LineStop",
]
