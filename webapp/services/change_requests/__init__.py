"""Change requests as people work them: opening one for a flag change, reviewing, committing,
reopening, closing."""
