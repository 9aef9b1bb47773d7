"""POST /v1/videos — start a generation (the SubmitFunction)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from videogen import contract, wiring
from videogen.api.http import caller, json_response, raw_body
from videogen.api.openapi import CACHE_CONTROL, SECURED, job_links, problems
from videogen.domain import errors
from videogen.services.submission import KEY_PATTERN, submit_video

router = APIGatewayHttpRouter()

_ACCEPTED = {
    **CACHE_CONTROL,
    "Location": {"description": "The job's URL, /v1/videos/{id}", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "true when this is the stored answer of an earlier request with the same key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


# Powertools does not validate this route (enable_validation=False): a replay must answer as the
# first time BEFORE the body is checked against today's registry, and the key and size checks
# have their own codes. The parameters below exist for the document; submit_video validates the
# body with the same input models the document's union is built from.
@router.post(
    "/v1/videos",
    operation_id="createVideo",
    summary="Start a generation",
    description="Charges the model's price and creates a job; the same Idempotency-Key and body again "
    "answers the stored first answer with Idempotent-Replayed: true.",
    tags=["videos"],
    security=SECURED,
    enable_validation=False,
    responses={
        202: {
            "description": "accepted: the job and what was charged",
            "content": {"application/json": {"model": contract.SubmitAccepted}},
            "headers": _ACCEPTED,  # type: ignore[typeddict-item]
            "links": job_links(),
        },
        **problems(
            errors.IdempotencyKeyMissing,
            errors.IdempotencyKeyInvalid,
            errors.InsufficientCredits,
            errors.ModelNotFound,
            errors.IdempotencyKeyInUse,
            errors.PayloadTooLarge,
            errors.ValidationFailed,
            errors.IdempotencyKeyReused,
            errors.TooManyActiveJobs,
            errors.RateLimited,
            errors.ConcurrentUpdate,
            errors.StoreBusy,
            errors.UploadNotFound,
            errors.UploadNotReady,
            errors.UploadRejected,
        ),
    },
)
def create_video(
    idempotency_key: str = Header(  # type: ignore[assignment]  # for the document; read from the event
        ...,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=KEY_PATTERN,
        description="1-255 printable ASCII characters, scoped per user, kept at least 24 hours",
    ),
    body: contract.VideoRequest = Body(...),  # type: ignore[assignment]  # for the document; read raw
) -> Response[contract.SubmitAccepted]:
    answer = submit_video(
        user_id=caller(router),
        idempotency_key=router.current_event.headers.get("idempotency-key"),
        raw_body=raw_body(router),
        store=wiring.store(),
        registry=wiring.registry(),
        workflow=wiring.workflow(),
        limits=wiring.submit_limits(),
    )
    headers = {"Location": answer.location}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(answer.status_code, answer.body, headers)
