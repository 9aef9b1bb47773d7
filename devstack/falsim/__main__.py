"""``python -m devstack.falsim``: run the fal.ai simulator on 127.0.0.1:$FALSIM_PORT (default 3001).

Environment: ``FALSIM_HOST`` (127.0.0.1), ``FALSIM_PORT`` (3001, 0 = any free port), ``FALSIM_SEED``
(fault-injection RNG seed), ``FALSIM_CONFIG`` (JSON object of config overrides, e.g.
``{"queue_s": 0.5, "fail_rate": 0.1}``). Stop with Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from devstack.falsim.server import FalSimulator


def main() -> int:
    logging.basicConfig(level=os.environ.get("FALSIM_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    seed_text = os.environ.get("FALSIM_SEED", "")
    sim = FalSimulator(
        host=os.environ.get("FALSIM_HOST", "127.0.0.1"),
        port=int(os.environ.get("FALSIM_PORT", "3001")),
        seed=int(seed_text) if seed_text else None,
    )
    overrides = os.environ.get("FALSIM_CONFIG", "")
    if overrides:
        sim.set_config(**json.loads(overrides))
    sim.start()
    print(f"fal simulator on {sim.base_url} (jwks {sim.jwks_url})", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
