"""The credit packs on sale: what ``GET /v1/products`` shows and what a verified store purchase is
worth. Read from one stack parameter (JSON), validated once at start-up:

    [{"id": "credits_100", "credits": 100,
      "app_store_product_id": "com.example.credits100", "google_play_product_id": "credits_100"}]

A pack has an id, a positive number of credits and at least one store's product id (a pack may be
sold in one store only). Pack ids are unique, and so is each store product id across the packs: a
store product names ONE pack. Unknown keys are refused (a typo must not silently sell a pack with
no store id). Every refusal is a :class:`ProductsInvalid` naming the pack and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_PACKS = 50
MAX_CREDITS = 1_000_000
_PACK_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# App Store Connect: letters, digits, underscores and periods. Play Console: lower-case letters,
# digits, underscores and periods, starting with a letter or digit. Both: at most 100 characters.
_APP_STORE_ID = re.compile(r"[A-Za-z0-9_.]{1,100}")
_GOOGLE_PLAY_ID = re.compile(r"[a-z0-9][a-z0-9_.]{0,99}")
_FIELDS = ("id", "credits", "app_store_product_id", "google_play_product_id")


class ProductsInvalid(ValueError):
    """The products parameter is not a valid list of packs; the message says where and why."""


@dataclass(frozen=True)
class CreditPack:
    id: str
    credits: int
    app_store_product_id: str | None = None
    google_play_product_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "credits": self.credits,
            "app_store_product_id": self.app_store_product_id,
            "google_play_product_id": self.google_play_product_id,
        }


@dataclass(frozen=True)
class Catalog:
    """The packs in the parameter's order, looked up by each store's product id."""

    packs: tuple[CreditPack, ...] = ()

    def __iter__(self) -> Iterator[CreditPack]:
        return iter(self.packs)

    def __len__(self) -> int:
        return len(self.packs)

    def by_app_store(self, product_id: str) -> CreditPack | None:
        return next((p for p in self.packs if p.app_store_product_id == product_id), None)

    def by_google_play(self, product_id: str) -> CreditPack | None:
        return next((p for p in self.packs if p.google_play_product_id == product_id), None)


def parse_products(text: str) -> Catalog:
    """The catalog in ``text`` (a JSON array of packs; empty or blank = nothing on sale)."""
    if not text.strip():
        return Catalog()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProductsInvalid(f"products: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(raw, list):
        raise ProductsInvalid(f"products: must be a JSON array of packs, got {_kind(raw)}")
    if len(raw) > MAX_PACKS:
        raise ProductsInvalid(f"products: at most {MAX_PACKS} packs, got {len(raw)}")
    packs = tuple(_pack(i, item) for i, item in enumerate(raw))
    _unique(packs, "id")
    _unique(packs, "app_store_product_id")
    _unique(packs, "google_play_product_id")
    return Catalog(packs)


def _pack(index: int, item: object) -> CreditPack:
    where = f"products[{index}]"
    if not isinstance(item, dict):
        raise ProductsInvalid(f"{where}: must be an object, got {_kind(item)}")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ProductsInvalid(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
    pack_id = item.get("id")
    if not isinstance(pack_id, str) or not _PACK_ID.fullmatch(pack_id):
        raise ProductsInvalid(
            f"{where}.id: must be 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter or digit, "
            f"got {pack_id!r}"
        )
    where = f"products[{index}] ({pack_id})"
    credits = item.get("credits")
    if isinstance(credits, bool) or not isinstance(credits, int) or not 0 < credits <= MAX_CREDITS:
        raise ProductsInvalid(f"{where}.credits: must be an integer from 1 to {MAX_CREDITS}, got {credits!r}")
    app_store = _store_id(where, item, "app_store_product_id", _APP_STORE_ID, "letters, digits, '_' and '.'")
    google_play = _store_id(
        where,
        item,
        "google_play_product_id",
        _GOOGLE_PLAY_ID,
        "a-z, 0-9, '_' and '.', starting with a letter or digit",
    )
    if app_store is None and google_play is None:
        raise ProductsInvalid(f"{where}: needs app_store_product_id or google_play_product_id (or both)")
    return CreditPack(pack_id, credits, app_store, google_play)


def _store_id(where: str, item: dict[str, Any], field: str, pattern: re.Pattern[str], allowed: str) -> str | None:
    value = item.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProductsInvalid(f"{where}.{field}: must be 1-100 characters of {allowed}, got {value!r}")
    return value


def _unique(packs: tuple[CreditPack, ...], field: str) -> None:
    seen: dict[str, int] = {}
    for index, pack in enumerate(packs):
        value = getattr(pack, field)
        if value is None:
            continue
        if value in seen:
            raise ProductsInvalid(
                f"products[{index}] ({pack.id}).{field}: {value!r} is already used by products[{seen[value]}]"
                f" ({packs[seen[value]].id})"
            )
        seen[value] = index


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
