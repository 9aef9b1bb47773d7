"""The generated parts of docs/api.md, rendered from the code itself.

``python -m devstack.docs`` rewrites every marked section of docs/api.md; ``--check`` only
reports (exit 1) when one is out of date. tests/unit/test_docs.py runs the check, so a new
route, error class, changed status or model cannot ship without its documentation.

A marked section is the text between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``; everything outside the markers is written by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.template import SamTemplate
from videogen import contract
from videogen.domain.endings import FailureCode
from videogen.domain.errors import error_classes
from videogen.domain.registry import Registry

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

# What an app should do when it gets each problem ``code``. Keyed by code (not an attribute of
# the error classes, so the domain package stays free of documentation text). Every code the
# domain defines must be here, and nothing else: the test fails otherwise.
ADVICE: dict[str, str] = {
    "idempotency_key_missing": "A bug in the app: send an `Idempotency-Key` with every `POST /v1/videos`. "
    "Do not retry unchanged.",
    "idempotency_key_invalid": "A bug in the app: the key must be 1–255 printable ASCII characters, no leading "
    "or trailing space (a UUID is ideal). Do not retry unchanged.",
    "invalid_cursor": "Start the listing again without `cursor` (a cursor only works for the user and listing "
    "that returned it).",
    "bad_request": "A bug in the caller: fix the query (`limit` 1–100, a known `status`). Do not retry unchanged.",
    "unauthorized": "Sign the user in again and retry with a fresh token (see [auth.md](auth.md)).",
    "invalid_signature": "Webhook only (fal.ai, never an app): the delivery was not signed for this deployment; "
    "nothing changed.",
    "insufficient_credits": "Show the price and the balance and offer a top-up; submit again once the balance "
    "covers the price (the same key works: a refused request stores nothing). Nothing was charged.",
    "device_not_found": "The caller has no device with this id (never registered, removed, or removed because its "
    "push service reported the token invalid): nothing to delete. Do not retry.",
    "too_many_devices": "The user has 10 devices: `DELETE /v1/devices/{device_id}` one (e.g. the oldest from "
    "`GET /v1/devices`), then register again.",
    "upload_not_found": "An `upload:<id>` input (422 at submit) or `GET /v1/uploads/{id}` (404) names no upload "
    "of this user's (unknown, another user's, or older than 7 days): upload the file again. Nothing was charged.",
    "upload_not_ready": "The upload's bytes are still being checked (seconds after the POST): poll "
    "`GET /v1/uploads/{id}` until `ready`, then submit again with the same key. Nothing was charged.",
    "upload_rejected": "The upload is not a valid file of its declared type (its `error` says why), or an image "
    "given to a video field (or the reverse): pick another file. Nothing was charged.",
    "job_not_found": "The id is unknown or belongs to another user: drop it from the app's list. Do not retry.",
    "model_not_found": "The model is not (or no longer) on sale: refresh `GET /v1/models` and let the user "
    "choose again. Nothing was charged.",
    "not_found": "No such route: check the path and method against this page.",
    "idempotency_key_in_use": "The first request with this key is still being processed: retry with the SAME "
    "key and body after a second; you will get its answer.",
    "not_cancelable": "Generation has started or the job has finished: keep polling `GET /v1/videos/{id}`; "
    "the job ends by itself.",
    "payload_too_large": "The body is over 64 KiB: shorten the prompt or inputs. Do not retry unchanged.",
    "validation_failed": "Show `errors[].msg` next to the inputs named by `errors[].loc`; fix and submit again "
    "(the same key works: nothing was stored). Also a request whose price alone is over the daily credit-spend "
    "cap (`loc` `input`): it can never be accepted, choose cheaper inputs. Nothing was charged.",
    "idempotency_key_reused": "A bug in the app: a key names ONE request. Use a new key for a different body.",
    "too_many_active_jobs": "The user has the maximum number of unfinished jobs: wait until one finishes (poll "
    "`GET /v1/videos/{id}`, `Retry-After` is a hint), then submit again (the same key works). Nothing was charged.",
    "rate_limited": "The user's own limit: too many submits and uploads in a short time (wait `Retry-After` "
    "seconds, then send the SAME request: the same key works) or the daily credit-spend cap (the detail names it; "
    "`Retry-After` is the time until 00:00 UTC). Nothing was charged.",
    "concurrent_update": "Too many simultaneous changes to one account's balance: retry with the SAME key "
    "after `Retry-After` seconds. Nothing was charged.",
    "service_unavailable": "Temporary (fal unreachable, or the database kept refusing for contention): retry "
    "the SAME request after `Retry-After` seconds (for a submit, with the SAME key). Nothing changed.",
    "grant_conflict": "Operators only (`python -m videogen.admin grant`): the grant id was already used with "
    "another amount; pick a new grant id.",
    "purchase_invalid": "The store's proof did not verify, is not for this app, or is not one consumable "
    "bought once: nothing was granted. Do not retry unchanged; a genuine purchase refused so is a setup bug "
    "(bundle id, app id, product type) to report.",
    "purchase_revoked": "The store refunded or revoked this purchase: nothing is granted; finish the "
    "transaction and refresh `GET /v1/credits`.",
    "product_unknown": "The product is not a credit pack on sale: refresh `GET /v1/products`; nothing was granted.",
    "purchase_already_claimed": "The purchase was credited to another account, or was bought with another "
    "account's `app_account_token`: nothing was granted. Pass the signed-in user's token from `GET /v1/credits` "
    "to the store at purchase time.",
    "internal_error": "Retry the SAME request with backoff (a submit with the SAME key: a replay answers if the "
    "first one went through); report it if it persists.",
}


# What each job ``error.code`` means and what the app can do, keyed by the codes' one home
# (videogen.domain.endings.FailureCode): every code must be here, and nothing else.
JOB_ERRORS: dict[FailureCode, tuple[str, str]] = {
    FailureCode.INVALID_INPUT: (
        "fal rejected an input (a validation error; `field` names it when fal says which, e.g. an image it "
        "could not download or decode)",
        "show `message` next to the input named by `field`; let the user change it and submit again (a new key)",
    ),
    FailureCode.CONTENT_POLICY: (
        "the provider's safety check refused the request; `field` names the flagged input when the provider "
        "says which (e.g. `prompt`, `image_url`)",
        "tell the user the input was refused by the content policy; let them change that input",
    ),
    FailureCode.GENERATION_FAILED: (
        "fal reported any other failure (a model error, an empty or unreadable result)",
        "let the user try again (a new key); report it if it repeats",
    ),
    FailureCode.PROVIDER_TIMEOUT: (
        "fal itself timed out (its request or startup timeout)",
        "try again later (a new key)",
    ),
    FailureCode.MEDIA_REJECTED: (
        "the generated video failed a safety check of ours (host, size, type)",
        "try again; report it if it repeats",
    ),
    FailureCode.EXPIRED: (
        "the job did not finish within its model's deadline, or fal no longer holds the request",
        "try again later (a new key)",
    ),
    FailureCode.SUBMIT_FAILED: (
        "fal could not accept the request (it refused it, or every retry failed: 5xx, 429, timeouts)",
        "try again later (a new key)",
    ),
}


def render_job_errors() -> str:
    lines = ["| code | meaning | what the app can do |", "|---|---|---|"]
    for code in FailureCode:
        meaning, advice = JOB_ERRORS[code]
        lines.append(f"| `{code}` | {meaning} | {advice} |")
    return "\n".join(lines)


# One line per route of template.yaml (the routes API Gateway serves). Every route must be here,
# and nothing else: a route added to the template without a line here fails the test.
ROUTE_SUMMARY: dict[str, str] = {
    "POST /v1/videos": "start a generation (charges credits)",
    "GET /v1/videos": "the caller's jobs, newest first, paged",
    "GET /v1/videos/{id}": "one job",
    "POST /v1/videos/{id}/cancel": "cancel a job that has not started generating (refunds)",
    "GET /v1/credits": "balance and ledger, newest first, paged",
    "GET /v1/models": "the models on sale, their prices and input schemas",
    "GET /v1/products": "the credit packs on sale, with each store's product id",
    "POST /v1/purchases": "turn a verified App Store or Google Play purchase into credits, once per store transaction",
    "GET /v1/purchases": "the caller's store purchases (also revoked ones), newest first, cursor",
    "POST /webhooks/app-store": "App Store Server Notifications V2: refunds claw back (Apple only; not in the "
    "OpenAPI document)",
    "POST /webhooks/google-play": "Play real-time developer notifications pushed by Pub/Sub: voided purchases "
    "claw back (Google only; not in the OpenAPI document)",
    "GET /openapi.json": "the OpenAPI document of the app's routes",
    "PUT /v1/devices/{device_id}": "register or update a push notification target (at most 10)",
    "GET /v1/devices": "the caller's push notification targets (never their tokens)",
    "DELETE /v1/devices/{device_id}": "remove a push notification target",
    "POST /v1/uploads": "a presigned S3 POST for an input file (the file goes straight to S3)",
    "GET /v1/uploads/{id}": "one upload of the caller's: pending, ready (use it as `upload:<id>`) or rejected",
    "POST /webhooks/fal": "fal.ai reports a finished request (operators; not in the OpenAPI document)",
}
ROUTE_AUTH = {
    "/webhooks/fal": "fal's signature + token",
    "/webhooks/app-store": "Apple's signature (x5c chain)",
    "/webhooks/google-play": "the Pub/Sub push's OIDC token (Google's signature, our audience and service account)",
}


def error_rows() -> list[tuple[str, int, str]]:
    """(code, status, title) per distinct code and status, by status then code. A subclass that
    keeps its parent's code and status (``StoreBusy``) is the same answer to the app, so it is
    listed once; one that keeps the code on another route's status (``UnknownUpload``: 404 on
    GET, 422 at submit) is a row of its own."""
    rows: dict[tuple[str, int], tuple[str, int, str]] = {}
    for cls in error_classes():
        rows.setdefault((cls.code, cls.status), (cls.code, cls.status, cls.title))
    return sorted(rows.values(), key=lambda r: (r[1], r[0]))


def render_errors() -> str:
    lines = ["| code | HTTP | title | what the app should do |", "|---|---|---|---|"]
    for code, status, title in error_rows():
        lines.append(f"| `{code}` | {status} | {title} | {ADVICE[code]} |")
    return "\n".join(lines)


def render_models() -> str:
    lines = [
        "| id | name | fal endpoint | credits at default inputs | expected seconds | deadline (s) |",
        "|---|---|---|---|---|---|",
    ]
    for m in Registry():
        lines.append(f"| `{m.id}` | {m.name} | `{m.fal_endpoint}` | {m.default_credits} | {m.expected_s} | {m.max_s} |")
    return "\n".join(lines)


def route_keys() -> list[str]:
    return [f"{r.method} {r.path}" for r in SamTemplate.load().routes()]


def render_routes() -> str:
    lines = ["| route | auth | served by | what |", "|---|---|---|---|"]
    for r in SamTemplate.load().routes():
        auth = "JWT" if r.authorized else ROUTE_AUTH.get(r.path, "none")
        lines.append(f"| `{r.method} {r.path}` | {auth} | `{r.function}` | {ROUTE_SUMMARY[f'{r.method} {r.path}']} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Planned:
    """One line of "Planned — not built yet": what the design's contract has and this
    code does not. ``routes`` ("METHOD /path", as template.yaml spells them) and ``fields``
    ((contract model, field name)) say how to tell it was built: the test fails once any of them
    exists, so a built feature leaves this list with the change that builds it."""

    text: str
    routes: tuple[str, ...] = ()
    fields: tuple[tuple[type[contract.BaseModel], str], ...] = ()

    def built(self, routes: set[str]) -> list[str]:
        """What of it exists already (empty: really not built)."""
        return [r for r in self.routes if r in routes] + [
            f"{model.__name__}.{name}" for model, name in self.fields if name in model.model_fields
        ]


PLANNED: list[Planned] = [
    Planned("`POST /v1/quotes` — the price of a request before it is made.", routes=("POST /v1/quotes",)),
    Planned(
        "`POST /v1/sequences` and `GET …/sequences` — one long video from chained segments.",
        routes=(
            "POST /v1/sequences",
            "GET /v1/sequences",
            "GET /v1/sequences/{id}",
            "POST /v1/sequences/{id}/cancel",
        ),
    ),
    Planned("On the Job: `progress.eta_s`.", fields=((contract.Progress, "eta_s"),)),
]


def render_planned() -> str:
    return "\n".join(f"- {item.text}" for item in PLANNED)


SECTIONS: dict[str, Callable[[], str]] = {
    "routes": render_routes,
    "error-codes": render_errors,
    "job-error-codes": render_job_errors,
    "models": render_models,
    "planned": render_planned,
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN GENERATED: {re.escape(name)} [^>]*-->\n)(.*?)(<!-- END GENERATED: {re.escape(name)} -->)",
        re.DOTALL,
    )


def update(text: str) -> str:
    """``text`` with every marked section re-rendered. A missing marker is an error."""
    for name, render in SECTIONS.items():
        pattern = _pattern(name)
        if not pattern.search(text):
            raise ValueError(f"docs/api.md has no marked section {name!r}")
        body = render()
        text = pattern.sub(lambda m, body=body: f"{m.group(1)}{body}\n{m.group(3)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is out of date; write nothing")
    args = parser.parse_args(argv)
    current = API_DOC.read_text(encoding="utf-8")
    fresh = update(current)
    if fresh == current:
        print("docs/api.md is up to date")
        return 0
    if args.check:
        print("docs/api.md is out of date: run `python -m devstack.docs`", file=sys.stderr)
        return 1
    API_DOC.write_text(fresh, encoding="utf-8")
    print("docs/api.md updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
