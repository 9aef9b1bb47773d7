"""The notifier's every branch on the fakes: a completed job with its poster, the poster wait
exhausted, a failed job, no devices, push off, a duplicate event, a disabled endpoint, one device
failing while the others are notified, an endpoint made at the first send."""

from __future__ import annotations

import pytest

from tests.fakes.devices import FakeDeviceStore, FakePosters, FakePush
from videogen.domain.devices import Platform
from videogen.domain.models import JobStatus
from videogen.services.notify import Notifier, NotifyIncomplete


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@pytest.fixture
def world() -> tuple[Notifier, FakeDeviceStore, FakePush, FakePosters, Clock]:
    store, push, posters, clock = FakeDeviceStore(), FakePush(), FakePosters(), Clock()
    notifier = Notifier(
        store, push, posters, poster_wait_s=5, poster_poll_s=1, sleep=clock.sleep, clock=lambda: clock.now
    )
    return notifier, store, push, posters, clock


def register(store: FakeDeviceStore, device_id: str, platform: Platform, user: str = "alice", arn: bool = True) -> None:
    device, _ = store.put_device(user, device_id, platform, f"tok-{device_id}")
    if arn:
        store.set_endpoint(device, f"arn:endpoint/{device_id}")


def test_a_completed_job_notifies_every_device_once_with_its_poster(world) -> None:
    notifier, store, push, posters, _ = world
    register(store, "ios", Platform.APNS)
    register(store, "android", Platform.FCM)
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"sent": 2}
    assert sorted((s.endpoint_arn, s.notification.poster_url) for s in push.sent) == [
        ("arn:endpoint/android", posters.url),
        ("arn:endpoint/ios", posters.url),
    ]
    assert {r["state"] for r in store.records.values()} == {"sent"}


def test_the_poster_is_waited_for_and_used_when_it_comes_in_time(world) -> None:
    notifier, store, push, posters, clock = world
    posters.after = 3
    register(store, "ios", Platform.APNS)
    notifier.job_ended("job-1", "alice", JobStatus.COMPLETED)
    assert push.sent[0].notification.poster_url == posters.url and clock.slept == [1, 1, 1]


def test_the_poster_wait_is_bounded_then_it_is_sent_without(world, counted) -> None:
    notifier, store, push, posters, clock = world
    posters.after = None
    register(store, "ios", Platform.APNS)
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"sent": 1}
    assert push.sent[0].notification.poster_url is None
    assert sum(clock.slept) == 5 and counted("PushPosterWaitExhausted") == 1


def test_a_failed_job_is_notified_without_waiting_for_a_poster(world) -> None:
    notifier, store, push, posters, clock = world
    register(store, "ios", Platform.APNS)
    notifier.job_ended("job-1", "alice", JobStatus.FAILED)
    sent = push.sent[0].notification
    assert sent.status == JobStatus.FAILED and sent.poster_url is None and "refunded" in sent.body
    assert posters.looks == 0 and clock.slept == []


def test_a_canceled_job_notifies_nobody(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "ios", Platform.APNS)
    assert notifier.job_ended("job-1", "alice", JobStatus.CANCELED) == {}
    assert push.sent == []


def test_no_devices_no_poster_wait_nothing_sent(world) -> None:
    notifier, store, push, posters, clock = world
    register(store, "bobs", Platform.APNS, user="bob")
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {}
    assert push.sent == [] and posters.looks == 0 and clock.slept == []


def test_push_off_nothing_sent_and_nothing_recorded(world) -> None:
    notifier, store, push, _, _ = world
    push.platforms = set()
    register(store, "ios", Platform.APNS)
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {}
    assert push.sent == [] and store.records == {}


def test_a_duplicate_event_sends_nothing_a_second_time(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "ios", Platform.APNS)
    notifier.job_ended("job-1", "alice", JobStatus.COMPLETED)
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"duplicate": 1}
    assert len(push.sent) == 1


def test_a_disabled_endpoint_removes_the_device_and_its_endpoint(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "ios", Platform.APNS)
    register(store, "android", Platform.FCM)
    push.gone.add("arn:endpoint/ios")
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"removed": 1, "sent": 1}
    assert store.get_device("alice", "ios") is None and push.deleted == ["arn:endpoint/ios"]
    assert store.count("alice") == 1 and ("job-1", "ios") not in store.records


def test_a_device_re_registered_meanwhile_is_not_removed(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "ios", Platform.APNS)
    push.gone.add("arn:endpoint/ios")
    real_publish = push.publish

    def publish_then_reregister(platform, arn, notification):  # the app registers a new token meanwhile
        store.put_device("alice", "ios", Platform.APNS, "new-token")
        return real_publish(platform, arn, notification)

    push.publish = publish_then_reregister  # type: ignore[method-assign]
    notifier.job_ended("job-1", "alice", JobStatus.COMPLETED)
    assert store.get_device("alice", "ios").token == "new-token"


def test_one_device_failing_does_not_block_the_others_and_the_retry_sends_only_it(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "a", Platform.APNS)
    register(store, "b", Platform.FCM)
    register(store, "c", Platform.APNS_SANDBOX)
    push.unavailable.add("arn:endpoint/b")
    with pytest.raises(NotifyIncomplete):
        notifier.job_ended("job-1", "alice", JobStatus.COMPLETED)
    assert sorted(s.endpoint_arn for s in push.sent) == ["arn:endpoint/a", "arn:endpoint/c"]
    assert ("job-1", "b") not in store.records  # released: nothing was sent
    push.unavailable.clear()
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"duplicate": 2, "sent": 1}
    assert [s.endpoint_arn for s in push.sent][-1] == "arn:endpoint/b"


def test_an_unknown_outcome_is_never_sent_again_but_counted(world, counted) -> None:
    notifier, store, push, _, _ = world
    register(store, "a", Platform.APNS)
    push.broken.add("arn:endpoint/a")
    with pytest.raises(NotifyIncomplete):
        notifier.job_ended("job-1", "alice", JobStatus.COMPLETED)
    assert store.records[("job-1", "a")]["state"] == "sending" and counted("PushOutcomeUnknown") == 1
    push.broken.clear()
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"duplicate": 1}
    assert push.sent == []


def test_a_device_without_endpoint_gets_one_at_its_first_send(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "a", Platform.FCM, arn=False)
    assert notifier.job_ended("job-1", "alice", JobStatus.FAILED) == {"sent": 1}
    assert push.created == ["tok-a"] and store.get_device("alice", "a").endpoint_arn == push.sent[0].endpoint_arn


def test_a_token_rejected_at_the_first_send_removes_the_device(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "a", Platform.FCM, arn=False)
    push.gone.add("tok-a")
    assert notifier.job_ended("job-1", "alice", JobStatus.FAILED) == {"removed": 1}
    assert store.get_device("alice", "a") is None and push.sent == []


# --- a push token belongs to the device that registered it last ------------------------------------


def test_a_token_registered_by_another_user_moves_so_the_first_user_is_never_sent_their_jobs(world) -> None:
    """The phone was signed out of alice and into bob; bob's app registers the same token."""
    notifier, store, push, _, _ = world
    alice, _ = store.put_device("alice", "phone", Platform.APNS, "tok-shared")
    store.set_endpoint(alice, "arn:endpoint/shared")
    store.put_device("bob", "phone-b", Platform.APNS, "tok-shared")
    store.set_endpoint(store.get_device("bob", "phone-b"), "arn:endpoint/shared")  # SNS: one endpoint per token
    assert notifier.job_ended("job-a", "alice", JobStatus.COMPLETED) == {"moved": 1}
    assert push.sent == [] and store.records == {}  # nothing sent, nothing claimed
    assert store.get_device("alice", "phone") is None  # alice's stale device is removed ...
    assert push.deleted == []  # ... but not the endpoint: it is bob's now
    assert notifier.job_ended("job-b", "bob", JobStatus.COMPLETED) == {"sent": 1}
    assert [(s.endpoint_arn, s.notification.job_id) for s in push.sent] == [("arn:endpoint/shared", "job-b")]


def test_the_same_users_reinstall_with_the_same_token_notifies_the_new_install_only(world) -> None:
    notifier, store, push, _, _ = world
    register(store, "old", Platform.APNS)
    store.put_device("alice", "new", Platform.APNS, "tok-old")  # the same token under a new install id
    assert notifier.job_ended("job-1", "alice", JobStatus.FAILED) == {"moved": 1, "sent": 1}
    assert len(push.sent) == 1 and [d.id for d in store.list_devices("alice")] == ["new"]


def test_a_token_registered_back_belongs_to_its_first_owner_again(world) -> None:
    notifier, store, _, _, _ = world
    register(store, "phone", Platform.APNS)
    store.put_device("bob", "b", Platform.APNS, "tok-phone")
    store.put_device("alice", "phone", Platform.APNS, "tok-phone")  # signed back into alice
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"sent": 1}
    assert notifier.job_ended("job-2", "bob", JobStatus.COMPLETED) == {"moved": 1}


def test_a_device_registered_before_ownership_was_recorded_is_still_sent_to(world) -> None:
    notifier, store, _, _, _ = world
    register(store, "ios", Platform.APNS)
    store.owners.clear()  # no ownership item: a device stored before this rule
    assert notifier.job_ended("job-1", "alice", JobStatus.COMPLETED) == {"sent": 1}
