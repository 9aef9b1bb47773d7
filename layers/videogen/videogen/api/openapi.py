"""GET /openapi.json: the OpenAPI 3.1 document of the routes in docs/api.md.

Model input schemas come from the registry, so the document cannot drift from
what ``POST /v1/videos`` validates.
"""

from __future__ import annotations

from typing import Any

from videogen.domain.errors import DomainError
from videogen.domain.models import JobStatus
from videogen.domain.registry import Registry


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    return {
        str(c): {"description": "problem details", "content": {"application/problem+json": {"schema": _ref("Problem")}}}
        for c in codes
    }


def _codes() -> list[str]:
    def walk(cls: type[DomainError]) -> list[type[DomainError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in walk(sub))]

    return sorted({c.code for c in walk(DomainError)})


def openapi_document(registry: Registry) -> dict[str, Any]:
    page = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ]
    job_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    secured: list[dict[str, list[str]]] = [{"jwt": []}]
    inputs = {m.id: m.input_schema() for m in registry}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "videogen",
            "version": "1.0.0",
            "description": "Turn a prompt and an image into an AI video, paid for in credits.",
        },
        "components": {
            "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail", "code"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "code": {"type": "string", "enum": _codes()},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"loc": {"type": "string"}, "msg": {"type": "string"}},
                            },
                        },
                    },
                },
                "Job": {
                    "type": "object",
                    "required": ["id", "status", "model", "input", "credits_charged", "created_at", "updated_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
                        "model": {"type": "string"},
                        "input": {"type": "object"},
                        "credits_charged": {"type": "integer"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "completed_at": {"type": ["string", "null"], "format": "date-time"},
                        "progress": {
                            "type": "object",
                            "properties": {
                                "queue_position": {"type": ["integer", "null"]},
                                "message": {"type": ["string", "null"]},
                            },
                        },
                        "video": {
                            "type": ["object", "null"],
                            "properties": {
                                "url": {"type": "string"},
                                "expires_at": {"type": "string", "format": "date-time"},
                                "content_type": {"type": "string"},
                                "size_bytes": {"type": "integer"},
                            },
                        },
                        "error": {
                            "type": ["object", "null"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                },
                "LedgerEntry": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string", "enum": ["grant", "charge", "refund"]},
                        "amount": {"type": "integer"},
                        "job_id": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "CreateVideo": {
                    "type": "object",
                    "required": ["model", "input"],
                    "properties": {"model": {"type": "string", "enum": sorted(inputs)}, "input": {"type": "object"}},
                    "description": "input must match the chosen model's input_schema (GET /v1/models)",
                },
                **{f"Input_{k.replace('.', '_')}": v for k, v in inputs.items()},
            },
        },
        "paths": {
            "/v1/videos": {
                "post": {
                    "summary": "Start a generation",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        }
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CreateVideo")}}},
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "job": _ref("Job"),
                                    "credits": {
                                        "type": "object",
                                        "properties": {"charged": {"type": "integer"}, "balance": {"type": "integer"}},
                                    },
                                },
                            },
                            "accepted",
                        ),
                        **_problems(400, 401, 402, 404, 409, 413, 422, 429),
                    },
                },
                "get": {
                    "summary": "The caller's jobs, newest first",
                    "security": secured,
                    "parameters": [
                        *page,
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": [s.value for s in JobStatus]},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {"type": "array", "items": _ref("Job")},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "a page of jobs",
                        ),
                        **_problems(400, 401),
                    },
                },
            },
            "/v1/videos/{id}": {
                "get": {
                    "summary": "One job",
                    "security": secured,
                    "parameters": job_id,
                    "responses": {"200": _json(_ref("Job"), "the job"), **_problems(401, 404)},
                }
            },
            "/v1/videos/{id}/cancel": {
                "post": {
                    "summary": "Cancel a job that has not started generating",
                    "security": secured,
                    "parameters": job_id,
                    "responses": {"200": _json(_ref("Job"), "canceled"), **_problems(401, 404, 409, 503)},
                }
            },
            "/v1/credits": {
                "get": {
                    "summary": "Balance and ledger",
                    "security": secured,
                    "parameters": page,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "balance": {"type": "integer"},
                                    "ledger": {"type": "array", "items": _ref("LedgerEntry")},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "credits",
                        ),
                        **_problems(400, 401),
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "Models on sale with their input schemas",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "id": {"type": "string"},
                                                "name": {"type": "string"},
                                                "fal_endpoint": {"type": "string"},
                                                "credits": {"type": "integer"},
                                                "input_schema": {"type": "object"},
                                            },
                                        },
                                    }
                                },
                            },
                            "models",
                        )
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
            "/webhooks/fal": {
                "post": {
                    "summary": "fal.ai delivery (ED25519-signed, plus the deployment token in the query)",
                    "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "accepted (also duplicates and finished jobs)"},
                        **_problems(400, 401, 503),
                    },
                }
            },
        },
    }
