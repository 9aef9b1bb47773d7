"""S3 ObjectCreated on uploads/ (asynchronous): check each uploaded file and mark its upload
ready or rejected (videogen.services.uploads.UploadValidator). Raises when S3 could not be read,
so Lambda retries the event; a redelivery of a checked upload changes nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    done: dict[str, int] = {}
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        bucket, key = (s3.get("bucket") or {}).get("name"), (s3.get("object") or {}).get("key")
        if not bucket or not key:
            continue
        outcome = wiring.upload_validator().check(str(bucket), unquote_plus(str(key)))  # event keys are URL-encoded
        done[outcome] = done.get(outcome, 0) + 1
    return done
