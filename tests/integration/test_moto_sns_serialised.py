"""moto's SNS mobile push and the local push log under concurrency (devstack/moto_patches.py,
devstack/push_local.py): devices registered, published to and removed from many threads while the
table keeps changing, as the chaos run's notifier, registrations and DELETEs do. Unserialised,
CreatePlatformEndpoint scans the endpoint dict another thread is adding to, and the push log's
read of the table inside a Publish iterates items a writer is adding ("dictionary changed size
during iteration"): the Publish fails after moto stored the message, botocore retries it, and the
device is sent the notification twice or the log misses it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from devstack import moto_patches
from devstack.push_local import PushLog

TABLE = "push-serialised"
ACCOUNT = "123456789012"
REGION = "us-east-1"
WORKERS, ROUNDS = 8, 40


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, str, PushLog]]:
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        moto_patches.apply()
        once = Config(retries={"max_attempts": 1, "mode": "standard"})  # a failed call shows, not retried away
        db = boto3.client("dynamodb", region_name=REGION, config=once)
        sns = boto3.client("sns", region_name=REGION, config=once)
        db.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        app = sns.create_platform_application(Name="fcm", Platform="GCM", Attributes={"PlatformCredential": "local"})[
            "PlatformApplicationArn"
        ]
        log = PushLog(TABLE, REGION, ACCOUNT)
        log.install()
        try:
            yield db, sns, app, log
        finally:
            log.uninstall()


def test_devices_published_to_from_many_threads_get_each_message_once_attributed(
    aws: tuple[Any, Any, str, PushLog],
) -> None:
    db, sns, app, log = aws
    errors: list[BaseException] = []
    done = threading.Event()
    sent: list[tuple[str, str]] = []  # (device, job)
    lock = threading.Lock()

    def device_life(worker: int) -> None:
        try:
            for i in range(ROUNDS):
                device = f"w{worker}-d{i}"
                arn = sns.create_platform_endpoint(PlatformApplicationArn=app, Token=f"tok-{device}")["EndpointArn"]
                key = {"pk": {"S": f"USER#u{worker}"}, "sk": {"S": f"DEVICE#{device}"}}
                item = {**key, "user_id": {"S": f"u{worker}"}, "device_id": {"S": device}, "endpoint_arn": {"S": arn}}
                db.put_item(TableName=TABLE, Item=item)
                message = '{"default": "ready", "GCM": "{\\"fcmV1Message\\": {\\"message\\": {\\"data\\": {}}}}"}'
                sns.publish(TargetArn=arn, Message=message, MessageStructure="json")
                with lock:
                    sent.append((device, arn))
                db.delete_item(TableName=TABLE, Key=key)
                sns.delete_endpoint(EndpointArn=arn)
        except BaseException as exc:
            errors.append(exc)

    def churn() -> None:  # other users' items come and go: the table the push log reads keeps changing
        n = 0
        try:
            while not done.is_set():
                key = {"pk": {"S": f"JOB#{n}"}, "sk": {"S": "JOB"}}
                db.put_item(TableName=TABLE, Item=key)
                if n % 3 == 0:
                    db.delete_item(TableName=TABLE, Key=key)
                n += 1
        except BaseException as exc:
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave often, as on a loaded machine
    workers = [threading.Thread(target=device_life, args=(w,)) for w in range(WORKERS)]
    churners = [threading.Thread(target=churn) for _ in range(2)]
    for t in workers + churners:
        t.start()
    for t in workers:
        t.join(timeout=120)
    done.set()
    for t in churners:
        t.join(timeout=30)
    sys.setswitchinterval(switch)

    assert errors == []
    received = [(n["device_id"], n["user_id"]) for n in log.items()]
    assert len(received) == len(sent) == WORKERS * ROUNDS  # each publish recorded once, none lost
    assert sorted(d for d, _ in received) == sorted(d for d, _ in sent)  # each named by its device
    assert all(n["sent_at"] > 0 for n in log.items())


def test_registrations_from_many_threads_each_get_their_own_endpoint(aws: tuple[Any, Any, str, PushLog]) -> None:
    """CreatePlatformEndpoint scans every endpoint for the token (an existing one is answered
    again) while other registrations add theirs."""
    _, sns, app, _ = aws
    errors: list[BaseException] = []
    arns: dict[str, str] = {}

    def register(worker: int) -> None:
        try:
            for i in range(ROUNDS * 5):
                token = f"tok-{worker}-{i}"
                arns[token] = sns.create_platform_endpoint(PlatformApplicationArn=app, Token=token)["EndpointArn"]
        except BaseException as exc:
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=register, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    sys.setswitchinterval(switch)

    assert errors == []
    assert len(set(arns.values())) == len(arns) == WORKERS * ROUNDS * 5
