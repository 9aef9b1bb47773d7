"""The credit packs parameter: parsed into a catalog, or refused with a message naming the place."""

from __future__ import annotations

import json
from typing import Any

import pytest

from videogen.domain.products import MAX_CREDITS, MAX_PACKS, Catalog, CreditPack, ProductsInvalid, parse_products

PACKS = [
    {"id": "credits_100", "credits": 100, "app_store_product_id": "com.example.credits100",
     "google_play_product_id": "credits_100"},
    {"id": "credits_500", "credits": 500, "app_store_product_id": "com.example.credits500"},
    {"id": "play-only.1", "credits": 7, "google_play_product_id": "play.only_1"},
]  # fmt: skip


def _parse(packs: Any) -> Catalog:
    return parse_products(json.dumps(packs))


def _refused(packs: Any) -> str:
    with pytest.raises(ProductsInvalid) as e:
        _parse(packs)
    return str(e.value)


def _with(index: int, **fields: Any) -> list[dict[str, Any]]:
    packs = [dict(p) for p in PACKS]
    packs[index].update(fields)
    return [{k: v for k, v in p.items() if v is not ...} for p in packs]


def test_the_packs_parse_in_order_with_their_store_ids() -> None:
    catalog = _parse(PACKS)
    assert [p.id for p in catalog] == ["credits_100", "credits_500", "play-only.1"]
    assert len(catalog) == 3
    assert catalog.packs[0] == CreditPack("credits_100", 100, "com.example.credits100", "credits_100")
    assert catalog.packs[1].google_play_product_id is None
    assert catalog.packs[2].app_store_product_id is None
    assert [p.as_dict() for p in catalog] == [{**{"app_store_product_id": None, "google_play_product_id": None}, **p}
                                              for p in PACKS]  # fmt: skip


def test_each_store_finds_a_pack_by_its_own_product_id_only() -> None:
    catalog = _parse(PACKS)
    assert catalog.by_app_store("com.example.credits500") == catalog.packs[1]
    assert catalog.by_google_play("play.only_1") == catalog.packs[2]
    assert catalog.by_google_play("com.example.credits500") is None  # an App Store id is no Play id
    assert catalog.by_app_store("credits_100") is None
    assert catalog.by_app_store("nope") is None


@pytest.mark.parametrize("text", ["", "  \n", "[]"])
def test_nothing_on_sale_is_an_empty_catalog(text: str) -> None:
    assert list(parse_products(text)) == []


def test_not_json_is_refused_with_the_position() -> None:
    with pytest.raises(ProductsInvalid, match=r"products: not JSON \(.* line 1 column 2\)"):
        parse_products("[x")


@pytest.mark.parametrize(
    ("value", "kind"), [({"id": "a"}, "an object"), ("a", "a string"), (3, "a number"), (None, "null")]
)
def test_anything_but_an_array_is_refused(value: Any, kind: str) -> None:
    assert _refused(value) == f"products: must be a JSON array of packs, got {kind}"


def test_too_many_packs_are_refused() -> None:
    packs = [{"id": f"p{i}", "credits": 1, "app_store_product_id": f"a{i}"} for i in range(MAX_PACKS + 1)]
    assert _refused(packs) == f"products: at most {MAX_PACKS} packs, got {MAX_PACKS + 1}"
    assert len(_parse(packs[:MAX_PACKS])) == MAX_PACKS


@pytest.mark.parametrize(("item", "kind"), [([1], "an array"), (True, "a boolean"), ("p", "a string")])
def test_a_pack_that_is_not_an_object_is_refused(item: Any, kind: str) -> None:
    assert _refused([PACKS[0], item]) == f"products[1]: must be an object, got {kind}"


def test_an_unknown_field_is_refused_by_name() -> None:
    message = _refused(_with(1, app_store_id="com.example.typo"))
    assert message.startswith("products[1]: unknown field 'app_store_id' (known: id, credits,")


@pytest.mark.parametrize("pack_id", [None, "", "Credits", "-x", "a b", "x" * 65, 5])
def test_a_bad_pack_id_is_refused(pack_id: Any) -> None:
    message = _refused(_with(0, id=pack_id))
    assert message.startswith("products[0].id: must be 1-64 characters") and message.endswith(repr(pack_id))


def test_the_longest_pack_id_is_accepted() -> None:
    assert _parse(_with(0, id="x" * 64)).packs[0].id == "x" * 64


@pytest.mark.parametrize("credits", [0, -1, MAX_CREDITS + 1, True, "100", 1.5, None])
def test_credits_must_be_a_positive_integer(credits: Any) -> None:
    assert _refused(_with(1, credits=credits)) == (
        f"products[1] (credits_500).credits: must be an integer from 1 to {MAX_CREDITS}, got {credits!r}"
    )


@pytest.mark.parametrize("credits", [1, MAX_CREDITS])
def test_credits_at_the_bounds_are_accepted(credits: int) -> None:
    assert _parse(_with(1, credits=credits)).packs[1].credits == credits


@pytest.mark.parametrize("value", ["", "com.example-credits", "a b", "x" * 101, 100])
def test_a_bad_app_store_product_id_is_refused(value: Any) -> None:
    message = _refused(_with(1, app_store_product_id=value))
    assert message.startswith("products[1] (credits_500).app_store_product_id: must be 1-100 characters of letters")


@pytest.mark.parametrize("value", ["", "Credits", "_credits", "credits-1", "x" * 101, 7])
def test_a_bad_google_play_product_id_is_refused(value: Any) -> None:
    message = _refused(_with(2, google_play_product_id=value))
    assert message.startswith("products[2] (play-only.1).google_play_product_id: must be 1-100 characters of a-z")


def test_store_ids_in_each_store_s_own_alphabet_are_accepted() -> None:
    catalog = _parse(_with(0, app_store_product_id="Com.Example_Pack." + "x" * 83, google_play_product_id="9.a_b"))
    assert catalog.packs[0].app_store_product_id == "Com.Example_Pack." + "x" * 83
    assert catalog.packs[0].google_play_product_id == "9.a_b"


def test_a_pack_in_no_store_is_refused() -> None:
    message = _refused(_with(1, app_store_product_id=None))
    assert message == "products[1] (credits_500): needs app_store_product_id or google_play_product_id (or both)"


@pytest.mark.parametrize(
    ("index", "fields", "message"),
    [
        (2, {"id": "credits_100"}, "products[2] (credits_100).id: 'credits_100' is already used by products[0]"),
        (1, {"app_store_product_id": "com.example.credits100"},
         "products[1] (credits_500).app_store_product_id: 'com.example.credits100' is already used by products[0]"),
        (2, {"google_play_product_id": "credits_100"},
         "products[2] (play-only.1).google_play_product_id: 'credits_100' is already used by products[0]"),
    ],
)  # fmt: skip
def test_ids_are_unique_across_the_packs(index: int, fields: dict[str, str], message: str) -> None:
    assert _refused(_with(index, **fields)).startswith(message)


def test_one_product_id_may_name_the_same_pack_in_both_stores() -> None:
    catalog = _parse([{"id": "p", "credits": 1, "app_store_product_id": "p.1", "google_play_product_id": "p.1"}])
    assert catalog.by_app_store("p.1") == catalog.by_google_play("p.1") == catalog.packs[0]
