"""Credit grants: one domain operation, idempotent by grant id, with a ledger entry."""

from __future__ import annotations

import re

from videogen.domain.errors import BadRequest
from videogen.observability import logger
from videogen.ports import JobStore

_ID = re.compile(r"^[A-Za-z0-9._:@|+=-]{1,128}\Z")  # \Z: "$" would also take a trailing newline


def grant_credits(store: JobStore, *, user_id: str, credits: int, grant_id: str) -> bool:
    """Give ``credits`` to ``user_id`` once per ``grant_id``. True if applied now, False if before."""
    if not _ID.match(user_id):
        raise BadRequest("user id must be 1-128 characters of letters, digits and ._:@|+=-")
    if not _ID.match(grant_id):
        raise BadRequest("grant id must be 1-128 characters of letters, digits and ._:@|+=-")
    if isinstance(credits, bool) or not isinstance(credits, int) or not 1 <= credits <= 1_000_000:
        raise BadRequest("credits must be an integer between 1 and 1000000")
    applied = store.grant(user_id, credits, grant_id)
    logger.info(
        "credit grant", extra={"user_id": user_id, "grant_id": grant_id, "credits": credits, "applied": applied}
    )
    return applied
