"""S3 event notifications to the template's functions, locally.

What CloudFormation does for a SAM ``S3`` event (the bucket's ``NotificationConfiguration``
naming the function, its filter rules) :func:`configure` does on moto with
``PutBucketNotificationConfiguration``. moto then builds the real event (``Records[].s3``:
bucket, URL-encoded key, size, eTag; ``ObjectCreated:Post`` for a browser POST) and matches the
filters itself on every object write; it would hand the event to its own Lambda service (a
container), so :func:`deliver_to` routes it to the in-process handler instead — asynchronously,
on its own thread, as S3 invokes Lambda (``Event`` invocation), with Lambda's two retries of a
failed asynchronous invocation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from devstack.template import SamTemplate

logger = logging.getLogger(__name__)

ASYNC_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice
RETRY_DELAY_S = 0.5  # locally short (AWS waits about a minute, then two)


def notifications(template: SamTemplate, refs: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Bucket name -> the ``LambdaFunctionConfigurations`` its functions' S3 events ask for."""
    out: dict[str, list[dict[str, Any]]] = {}
    for logical_id, res in template.resources_of_type("AWS::Serverless::Function").items():
        for name, event in ((res.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") != "S3":
                continue
            props = template.resolve(event.get("Properties") or {}, refs)
            events = props["Events"] if isinstance(props["Events"], list) else [props["Events"]]
            config: dict[str, Any] = {
                "Id": f"{logical_id}{name}",
                "LambdaFunctionArn": str(refs[f"{logical_id}.Arn"]),
                "Events": events,
            }
            rules = ((props.get("Filter") or {}).get("S3Key") or {}).get("Rules")
            if rules:
                config["Filter"] = {"Key": {"FilterRules": rules}}
            out.setdefault(str(props["Bucket"]), []).append(config)
    return out


def configure(s3: Any, template: SamTemplate, refs: Mapping[str, Any]) -> None:
    """Give each bucket the notification configuration the deployed template gives it."""
    for bucket, configs in notifications(template, refs).items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configs}
        )


_lambdas: Any = None
_original: Any = None


def deliver_to(lambdas: Any) -> None:
    """Route moto's S3 → Lambda notifications to ``lambdas`` (a :class:`devstack.lambdas.LocalLambdas`)."""
    global _lambdas, _original
    from moto.s3 import notifications as moto_notifications

    _lambdas = lambdas
    if _original is None:
        _original = moto_notifications._invoke_awslambda
        moto_notifications._invoke_awslambda = _invoke  # type: ignore[assignment]


def stop_delivery() -> None:
    global _lambdas
    _lambdas = None


def _invoke(account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
    lambdas = _lambdas
    if lambdas is None:
        return
    event = json.loads(json.dumps(event_body))  # what S3 sends is JSON: no shared objects with moto
    threading.Thread(target=_run, args=(lambdas, fn_arn, event), name="s3-event", daemon=True).start()


def _run(lambdas: Any, fn_arn: str, event: dict[str, Any]) -> None:
    for attempt in range(1 + ASYNC_RETRIES):
        try:
            lambdas.invoke(fn_arn, event)
            return
        except Exception:
            logger.warning("S3 event to %s failed (attempt %d)", fn_arn, attempt + 1, exc_info=True)
            time.sleep(RETRY_DELAY_S)
    logger.error("S3 event to %s dropped after %d attempts (its dead-letter queue)", fn_arn, 1 + ASYNC_RETRIES)
