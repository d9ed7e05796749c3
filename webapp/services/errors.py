"""Domain errors; views and the API turn them into 4xx answers."""


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, field_errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}


class BadRequest(DomainError):
    """Malformed input answered with 400 (the SDK API's identities and traits, as Flagsmith)."""

    status_code = 400


class NotFound(DomainError):
    status_code = 404


class Forbidden(DomainError):
    status_code = 403


class Conflict(DomainError):
    """The request is valid but the object's state refuses it (published, in flight, stale)."""

    status_code = 409


class Invalid(DomainError):
    """Bad input; `field_errors` maps field names to messages."""

    status_code = 422
