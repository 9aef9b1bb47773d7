"""Use cases: each a small function or class over the ports; handlers call exactly one."""
