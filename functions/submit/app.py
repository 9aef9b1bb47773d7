"""POST /v1/videos — start a generation. Thin: parse the HTTP request, call submit_video."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.api.http import build_resolver, caller, json_response, raw_body
from videogen.observability import logger, metrics, tracer
from videogen.services.submission import submit_video

app = build_resolver()


@app.post("/v1/videos")
def post_video() -> Response:
    answer = submit_video(
        user_id=caller(app),
        idempotency_key=app.current_event.headers.get("idempotency-key"),
        raw_body=raw_body(app),
        store=wiring.store(),
        registry=wiring.registry(),
        workflow=wiring.workflow(),
        limits=wiring.submit_limits(),
    )
    headers = {"Location": answer.location}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(answer.status_code, answer.body, headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
