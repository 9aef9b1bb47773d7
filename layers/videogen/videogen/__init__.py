"""videogen: the shared package of the videogen backend (domain, ports, adapters, services)."""
