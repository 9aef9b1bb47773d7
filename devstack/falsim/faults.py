"""The fault plan: the current settings and the seeded random draws they drive.

Every timing and every injected fault of the simulator is one draw here (``chance``, ``duration``,
``coin``), so one seed replays the same sequence of draws.
"""

from __future__ import annotations

import json
import random
import threading
from typing import Any

from devstack.falsim.config import DEFAULT_CONFIG, validate_config


class FaultPlan:
    """Thread-safe settings plus the RNG; its lock is a leaf (nothing is called while holding it)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._config: dict[str, Any] = dict(DEFAULT_CONFIG)

    @property
    def config(self) -> dict[str, Any]:
        """A deep copy of the settings (safe to change)."""
        with self._lock:
            return json.loads(json.dumps(self._config))

    def update(self, **updates: Any) -> dict[str, Any]:
        """Change any subset of the settings (ValueError on an unknown key or bad value)."""
        clean = validate_config(updates)
        with self._lock:
            self._config.update(clean)
        return self.config

    def value(self, key: str) -> Any:
        with self._lock:
            return self._config[key]

    def chance(self, key: str) -> bool:
        """True with the probability the rate setting ``key`` gives (never a draw at rate 0)."""
        with self._lock:
            rate = float(self._config[key])
            return rate > 0 and self._rng.random() < rate

    def duration(self, key: str) -> float:
        """The range setting ``key``: the number itself, or a uniform draw in [min, max]."""
        with self._lock:
            value = self._config[key]
            if isinstance(value, list):
                return self._rng.uniform(value[0], value[1])
            return float(value)

    def coin(self) -> bool:
        """Which of a fault's two kinds this time (429 or 503, truncated or 5xx)."""
        with self._lock:
            return self._rng.random() < 0.5
