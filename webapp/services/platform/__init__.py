"""Projects, environments, people and keys, flags and segments, and what SDKs read (documents,
revisions, identities, evaluation)."""
