"""The chaos run's plan (devstack/chaos/plan.py): at every seed a small run's apps do each thing at
least once — an upload, a rejected upload, a device deleted mid-run and one kept, a token going
invalid — and the forced behaviours land on plans that make a job."""

from __future__ import annotations

import pytest

from devstack.chaos.plan import REJECTED, UPLOAD, URL, make_plan

SEEDS = range(1, 41)


@pytest.mark.parametrize("jobs", [40, 300])
def test_every_seed_plans_uploads_rejections_and_device_deletions(jobs: int) -> None:
    for seed in SEEDS:
        users, plans = make_plan(jobs, max(4, jobs // 5), seed)
        sources = {p.source for p in plans}
        assert {UPLOAD, REJECTED, URL} <= sources, seed
        devices = [d for u in users for d in u.devices]
        assert any(d.delete_after_s is not None for d in devices), seed
        assert any(d.delete_after_s is None for d in devices), seed
        assert all(1.0 <= d.delete_after_s <= max(8.0, 0.2 * jobs) for d in devices if d.delete_after_s), seed
        assert len({d.device_id for d in devices}) == len(devices)
        assert not any(d.delete_after_s is not None and d.invalid_after_s is not None for d in devices)
        if len([d for d in devices if d.delete_after_s is None]) > 1:
            assert any(d.invalid_after_s is not None for d in devices), seed
        assert all("image_url" in p.input for p in plans if p.source != URL), seed


def test_a_rejected_upload_costs_nothing_and_the_forced_behaviours_make_jobs() -> None:
    for seed in SEEDS:
        _, plans = make_plan(40, 8, seed)
        assert all(p.charges == 0 for p in plans if p.source == REJECTED)
        assert all(p.charges == p.cost for p in plans if p.source != REJECTED)
        makes_job = [p for p in plans if not p.user.poor and p.source != REJECTED]
        assert any(p.reuse_other_body for p in makes_job), seed
        assert any(p.cancel_after_s is not None for p in makes_job), seed
        assert any(p.source == UPLOAD for p in makes_job), seed


def test_the_plan_is_the_seeds() -> None:
    assert make_plan(40, 8, 7) == make_plan(40, 8, 7)
    assert make_plan(40, 8, 7) != make_plan(40, 8, 8)
