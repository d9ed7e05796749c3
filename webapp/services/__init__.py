"""Use cases. Services own the unit of work (one commit per use case) and raise domain errors."""
