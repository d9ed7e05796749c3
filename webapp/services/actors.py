"""Who does a thing: a user, an API key, a release pipeline, or the system.

Audit entries name them.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    kind: str  # user | api_key | pipeline | system
    label: str
    user_id: int | None = None
    api_key_id: int | None = None
    organisation_id: int | None = None

    @classmethod
    def for_user(cls, user) -> "Actor":
        return cls("user", user.email, user_id=user.id)

    @classmethod
    def for_api_key(cls, key) -> "Actor":
        if key.user_id is not None:
            return cls("api_key", f"{key.user.email} (token {key.prefix})", user_id=key.user_id,
                       api_key_id=key.id)
        return cls("api_key", f"API key {key.name}", api_key_id=key.id,
                   organisation_id=key.organisation_id)

    @classmethod
    def for_pipeline(cls, pipeline_name: str) -> "Actor":
        return cls("pipeline", f"Release pipeline {pipeline_name}")


SYSTEM = Actor("system", "Railyard")
