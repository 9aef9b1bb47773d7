"""HTTP glue shared by the API handlers: the one exception→problem+json mapping."""
