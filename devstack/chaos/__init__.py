"""The chaos run: many jobs against the local stack with every fault on, then an audit of every invariant.

``python -m devstack.chaos --jobs N --seed S [--users U] [--timeout-s T] [--conflict-rate R] [--markdown]``
(``make chaos`` runs 300 jobs, ``make chaos-small`` — the CI run — 40 jobs with seed 7).

1. Starts the local stack (``python -m devstack``, :class:`devstack.process.StackProcess`) on free
   ports, with crash points armed at random (``CRASH_POINTS=*``, ``CRASH_RATE``), DynamoDB
   conflicts injected (``LOCAL_DDB_CONFLICT_RATE``), some EventBridge deliveries to functions
   duplicated (``LOCAL_EVENT_DUPLICATE_RATE``, ``--event-duplicate-rate``), the reconciler on a
   compressed schedule and the job workflow's waits scaled down (``TIME_SCALE``). Its output goes
   to a log under .local/.
2. Turns on the fal simulator's faults (:func:`plan.sim_faults`; a small run raises the rarest so
   every kind fires): submit errors, failed generations, dropped / duplicated / delayed webhooks,
   OK webhooks without payload, broken CDN downloads (``--sim KEY=JSON`` changes one).
3. Drives N logical submissions from many users (:mod:`.plan`, seeded; :mod:`.driver`): some users
   cannot afford much (402), some submissions send the same Idempotency-Key several times at once,
   every 500 / 409 / network error is retried with the same key (as an app would), some keys are
   replayed later, a few are reused with another body (422), some jobs are cancelled right after
   submit or once fal has them (200 or 409). The users are apps (:mod:`.apps`): they register
   devices for push (some deleted mid-run, some whose token goes invalid), and a submission with
   an image sends a plain URL, a photo uploaded first through the presigned POST
   (``upload:<id>``), or bytes that are not the declared type (must be 422 upload_rejected).
4. Waits until every job is terminal or the time is up, then until the system is quiet (no job
   owing its event after two reconciler periods, no execution running, two equal scans), and reads
   everything back once (:mod:`.evidence`): table, bucket (and each poster's first bytes), the
   events the bus delivered (a catch-all rule into a log group, devstack/provision.py), the
   notifications each device got (``GET /_local/notifications``), the simulator's requests.
5. Audits that one snapshot (:mod:`.checks`, over :mod:`devstack.invariants`) and prints a table
   (:mod:`.report`).

The client side is judged precisely: a submission's final answer is the last of its retry loop;
intermediate 5xx / 409 / lost answers are fine when retried; every final answer of a key must be
the same status, its 202s one job with identical bodies; a final answer that is still an error (a
client that gave up) and a charged job whose client never got its 202 are violations.

Exit code 0 when no violation of any kind was found and the run did enough: every submission
sent, at least as many jobs as the users could afford, jobs ending completed, failed and
canceled, and every fault kind turned on fired (sim faults, each crash point, a duplicated
delivery and — with ``--require-conflicts``, the default — a DynamoDB conflict), the apps deleted a
device, were notified, completed a job from an upload and had a rejected upload refused, at every
size; 1 otherwise; 2 when
the stack could not be started. Everything is bounded by ``--timeout-s``; the stack is always
stopped. The last lines are a machine-readable ``CHAOS-RESULT {json}`` and PASS / FAIL.

Needs ``PYTHONPATH=layers/videogen:.`` (the Makefile exports it).
"""

from devstack.chaos.run import RESULT_PREFIX, main

__all__ = ["RESULT_PREFIX", "main"]
