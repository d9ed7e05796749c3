"""Release pipelines as builders make them: reading, the draft builder, inputs, health checks, and
how stages are described in words."""
