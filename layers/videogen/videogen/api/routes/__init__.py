"""The public routes, as Powertools Routers: each Lambda handler includes the ones it serves,
and the OpenAPI document (:mod:`videogen.api.openapi`) is built from all of them."""

from __future__ import annotations

from videogen.api.routes.devices import router as devices
from videogen.api.routes.purchases import router as purchases
from videogen.api.routes.reads import router as reads
from videogen.api.routes.submit import router as submit
from videogen.api.routes.uploads import router as uploads

ROUTERS = (submit, reads, uploads, devices, purchases)
