"""A local fal.ai simulator (queue API, signed webhooks, JWKS, CDN of real MP4s, fault injection).

Development and tests only; never shipped to Lambda. ``python -m devstack.falsim`` runs it standalone.
"""

from devstack.falsim.server import DEFAULT_CONFIG, FalSimulator, validate_config

__all__ = ["DEFAULT_CONFIG", "FalSimulator", "validate_config"]
