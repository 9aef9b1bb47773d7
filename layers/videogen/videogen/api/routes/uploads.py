"""POST /v1/uploads and GET /v1/uploads/{id} (the UploadsFunction): DynamoDB and presigning only;
the file itself goes from the app straight to S3, never through the API."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from videogen import contract, wiring
from videogen.api.http import JSON, NO_STORE, caller
from videogen.api.openapi import CACHE_CONTROL, SECURED, ok, problems
from videogen.domain import errors
from videogen.services import uploads

router = APIGatewayHttpRouter()

UploadId = Annotated[str, Path(description="The upload's id (upl_…)")]


@router.post(
    "/v1/uploads",
    operation_id="createUpload",
    summary="A place for an input file: a presigned S3 POST",
    description="Send the file to `url` as multipart/form-data with every field of `fields`, the file last "
    "(field `file`), within 15 minutes, with exactly the declared type and size. The upload is `pending` "
    "until its bytes were checked, then `ready` (use it as `upload:<id>` in any URL input) or `rejected`.",
    tags=["uploads"],
    security=SECURED,
    responses={
        201: {
            "description": "the pending upload and where to send the file",
            "content": {"application/json": {"model": contract.UploadCreated}},
            "headers": CACHE_CONTROL,  # type: ignore[typeddict-item]
        },
        **problems(errors.ValidationFailed, errors.RateLimited, errors.ConcurrentUpdate, errors.StoreBusy),
    },
)
def create_upload(body: Annotated[contract.UploadRequest, Body()]) -> Response[contract.UploadCreated]:
    created = uploads.create_upload(wiring.store(), wiring.upload_bucket(), caller(router), body, wiring.user_limits())
    return Response(status_code=201, content_type=JSON, body=created, headers=dict(NO_STORE))


@router.get(
    "/v1/uploads/<id>",
    operation_id="getUpload",
    summary="One upload (the caller's own)",
    tags=["uploads"],
    security=SECURED,
    responses={**ok(contract.Upload, "the upload"), **problems(errors.UnknownUpload)},
)
def get_upload(id: UploadId) -> contract.Upload:
    return uploads.get_upload(wiring.store(), caller(router), id)
