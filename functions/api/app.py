"""The read API and cancel: GET /v1/videos[/{id}], POST /v1/videos/{id}/cancel, GET /v1/credits,
GET /v1/models, GET /openapi.json. Reads touch DynamoDB (and S3 presigning) only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.api.http import build_resolver, caller, json_response
from videogen.api.openapi import openapi_document
from videogen.observability import logger, metrics, tracer
from videogen.services import queries
from videogen.services.views import job_view

app = build_resolver()


def _params() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


@app.get("/v1/videos/<job_id>")
def get_video(job_id: str) -> Response:
    logger.set_correlation_id(job_id)
    s = wiring.settings()
    return json_response(200, queries.get_job(wiring.store(), wiring.videos(), caller(app), job_id, s.video_url_ttl_s))


@app.get("/v1/videos")
def list_videos() -> Response:
    s = wiring.settings()
    return json_response(
        200, queries.list_jobs(wiring.store(), wiring.videos(), caller(app), _params(), s.video_url_ttl_s)
    )


@app.post("/v1/videos/<job_id>/cancel")
def cancel_video(job_id: str) -> Response:
    logger.set_correlation_id(job_id)
    job = queries.owned_job(wiring.store(), caller(app), job_id)
    done = wiring.cancel_job().run(job)
    return json_response(200, job_view(done, wiring.videos(), wiring.settings().video_url_ttl_s))


@app.get("/v1/credits")
def get_credits() -> Response:
    return json_response(200, queries.credits(wiring.store(), caller(app), _params()))


@app.get("/v1/models")
def get_models() -> Response:
    return json_response(200, queries.models(wiring.registry()))


@app.get("/openapi.json")
def get_openapi() -> Response:
    return json_response(200, openapi_document(wiring.registry()))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
