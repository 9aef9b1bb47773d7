"""The plan of a chaos run: every random choice (users, their devices, models, inputs, keys, client
behaviours), made from the seed before anything runs, and the simulator faults turned on."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SIM_FAULTS: dict[str, Any] = {
    "queue_s": [0.2, 2.0],
    "run_s": [0.3, 2.5],
    "webhook_delay_s": [0.0, 3.0],
    "submit_error_rate": 0.1,
    "fail_rate": 0.1,
    "webhook_drop_rate": 0.2,
    "webhook_duplicate_rate": 0.15,
    "cdn_error_rate": 0.1,
    # OK webhooks without a payload: a failure (docs/fal.md); at 0.03 a 300-job run missed it ~0.6 %
    "webhook_payload_error_rate": 0.05,
    # a cancelled request's webhook before the cancel call's answer; at 0.5 a 300-job run saw ~7
    # (missed in ~0.1 % of runs), at 0.75 ~10 (~0.003 %)
    "cancel_webhook_first_rate": 0.75,
}
# Jobs of a run: each (registry id, credits, input builder). Prices follow the registry. A builder's
# ``image_url`` is a plain URL; the plan may replace it by an upload (:class:`Plan.source`).
MODELS: tuple[tuple[str, int, Any], ...] = (
    (
        "kling-2.1-standard-i2v",
        4,
        lambda n: {"prompt": f"chaos {n}: a heron taking off", "image_url": f"https://example.com/chaos/{n}.png"},
    ),
    ("minimax-video-01", 5, lambda n: {"prompt": f"chaos {n}: rain on a tin roof"}),
    (
        "veo-3.1-i2v",
        8,
        lambda n: {
            "prompt": f"chaos {n}: a lighthouse at dusk",
            "duration": "4s",
            "resolution": "720p",
            "generate_audio": False,
            "image_url": f"https://example.com/chaos/{n}.png",
        },
    ),
    (
        "sora-2-i2v",
        8,
        lambda n: {
            "prompt": f"chaos {n}: paper boats",
            "duration": 4,
            "image_url": f"https://example.com/chaos/{n}.png",
        },
    ),
)
SIM_FAULT_KINDS = (  # (label, simulator stat, the config key that turns it on)
    ("fal submit errors (429/503)", "submit_errors", "submit_error_rate"),
    ("failed generations", "failures", "fail_rate"),
    ("webhooks dropped", "webhooks_dropped", "webhook_drop_rate"),
    ("webhooks duplicated", "webhooks_duplicated", "webhook_duplicate_rate"),
    ("webhooks delayed", "webhooks_delayed", "webhook_delay_s"),
    ("CDN errors (5xx / truncated)", "cdn_errors", "cdn_error_rate"),
    ("cancel webhooks before the cancel's answer", "cancel_webhooks_first", "cancel_webhook_first_rate"),
    ("OK webhooks without payload", "webhooks_without_payload", "webhook_payload_error_rate"),
)


def sim_faults(jobs: int) -> dict[str, Any]:
    """The simulator's fault settings for a run of ``jobs``: a small run raises the rarest ones so
    that every kind fires at least once at every size (a run that injected nothing proves nothing).
    The rates are chosen so that a 40-job run misses a kind about once in a thousand runs or less
    (a CDN error at 0.15 over ~20 downloads missed ~4 % of runs)."""
    config = dict(DEFAULT_SIM_FAULTS)
    if jobs < 100:
        config["webhook_payload_error_rate"] = 0.3
        config["webhook_duplicate_rate"] = 0.25
        config["cdn_error_rate"] = 0.3
        config["fail_rate"] = 0.15
        config["queue_s"] = [0.5, 2.5]  # cancels right after submit find the request still queued at fal
        config["cancel_webhook_first_rate"] = 1.0
    return config


PLATFORMS = ("apns", "apns_sandbox", "fcm")
# How a plan with an image input gets its image: a plain https URL, a photo the app uploads first
# (a real PNG through the presigned POST, then ``upload:<id>``), or an upload whose bytes are not
# of the declared type (the check rejects it; the submit must be 422 upload_rejected, nothing charged).
URL, UPLOAD, REJECTED = "url", "upload", "rejected"


@dataclass
class DevicePlan:
    device_id: str
    platform: str
    token: str
    delete_after_s: float | None  # DELETE it this long after the first submission (mid-run); None: kept
    # its token reported invalid (POST /_local/push/disable) this long after the first submission:
    # the next notification finds the endpoint disabled and removes the device
    invalid_after_s: float | None = None


@dataclass
class User:
    user_id: str
    credits: int
    poor: bool
    token: str = ""
    devices: list[DevicePlan] = field(default_factory=list)


@dataclass
class Plan:
    n: int
    user: User
    model: str
    cost: int
    input: dict[str, Any]
    key: str
    copies: int  # requests sent at once with the same key
    replay_after_s: float | None  # send the same key and body again this long after the answer
    reuse_other_body: bool  # send the key once more with another body: must be 422
    cancel_after_s: float | None
    source: str = URL  # URL / UPLOAD / REJECTED, for a model with an image_url (else URL)
    # cancel once the API shows the job ``submitted`` (in fal's queue), after cancel_after_s: the
    # cancel fal answers by removing the request (a timer alone mostly lands before or after that)
    cancel_when_submitted: bool = False

    @property
    def charges(self) -> int:
        """What the plan may cost its user: nothing when its upload is rejected (refused at submit)."""
        return 0 if self.source == REJECTED else self.cost


def make_plan(jobs: int, users: int, seed: int) -> tuple[list[User], list[Plan]]:
    rng = random.Random(seed)
    tag = f"{seed}-{rng.getrandbits(24):06x}"  # distinct users per run even against one long-lived stack
    people: list[User] = []
    delete_by_s = max(8.0, 0.2 * jobs)  # devices are deleted while submissions go on (~0.2 s per job)
    for i in range(users):
        poor = rng.random() < 0.25
        credits = rng.choice([4, 5, 8, 12]) if poor else 300
        user = User(f"chaos-{tag}-u{i:03d}", credits, poor)
        for d in range(rng.choice([0, 1, 1, 2, 3])):  # some users have no device, some several
            user.devices.append(
                DevicePlan(
                    device_id=f"{user.user_id}-d{d}",
                    platform=rng.choice(PLATFORMS),
                    token=f"tok-{tag}-{i:03d}-{d}-{rng.getrandbits(48):012x}",
                    delete_after_s=rng.uniform(1.0, delete_by_s) if rng.random() < 0.25 else None,
                )
            )
            device = user.devices[-1]
            if device.delete_after_s is None and rng.random() < 0.15:
                device.invalid_after_s = rng.uniform(1.0, delete_by_s)
        people.append(user)
    weights = [0.3 if u.poor else 1.0 for u in people]  # poor users send fewer jobs: some 402s, not a flood
    cancel_share = 0.15 if jobs >= 100 else 0.25  # a small run still cancels at fal's queue a few times
    plans = []
    for n in range(jobs):
        model, cost, build = rng.choice(MODELS)
        plans.append(
            Plan(
                n=n,
                user=rng.choices(people, weights)[0],
                model=model,
                cost=cost,
                input=build(n),
                key=f"chaos-{tag}-{n:04d}-{rng.getrandbits(32):08x}",
                copies=rng.choice([2, 3, 4]) if rng.random() < 0.2 else 1,
                replay_after_s=rng.uniform(0, 2) if rng.random() < 0.15 else None,
                reuse_other_body=rng.random() < 0.04,
                cancel_after_s=rng.uniform(0, 1.5) if rng.random() < cancel_share else None,
                source=_source(rng, build(n)),
                cancel_when_submitted=rng.random() < 0.5,
            )
        )
    # Even a small run exercises every client behaviour at least once.
    behaviours = {
        "copies": lambda p: p.copies > 1,
        "replay": lambda p: p.replay_after_s is not None,
        "reuse": lambda p: p.reuse_other_body,
        "cancel": lambda p: p.cancel_after_s is not None,
        UPLOAD: lambda p: p.source == UPLOAD,
        REJECTED: lambda p: p.source == REJECTED,
    }
    # ... on a plan that makes a job (a user who can pay, an image that is not rejected); a
    # rejected upload on any plan with an image (it never makes a job)
    makes_job = [p for p in plans if not p.user.poor and p.source != REJECTED] or plans
    for name, has in behaviours.items():
        pool = plans if name == REJECTED else makes_job
        if name in (UPLOAD, REJECTED):
            pool = [p for p in pool if "image_url" in p.input and p.source == URL]
        if pool and not any(has(p) for p in (plans if name == REJECTED else makes_job)):
            p = rng.choice(pool)
            if name == "copies":
                p.copies = 3
            elif name == "replay":
                p.replay_after_s = 0.5
            elif name == "reuse":
                p.reuse_other_body = True
            elif name == "cancel":
                p.cancel_after_s = 0.2
            else:
                p.source = name
    devices = [d for u in people for d in u.devices]
    if devices and not any(d.delete_after_s is not None for d in devices):
        rng.choice(devices).delete_after_s = 3.0
    if devices and all(d.delete_after_s is not None for d in devices):
        rng.choice(devices).delete_after_s = None
    kept = [d for d in devices if d.delete_after_s is None]
    if len(kept) > 1 and not any(d.invalid_after_s is not None for d in kept):
        rng.choice(kept).invalid_after_s = 2.0
    return people, plans


def _source(rng: random.Random, input_: dict[str, Any]) -> str:
    if "image_url" not in input_:
        return URL
    return rng.choices((URL, UPLOAD, REJECTED), (0.45, 0.45, 0.1))[0]
