"""Local development stack (never deployed): simulators and the local gateway."""
