"""DynamoDB adapter of the store purchases: implements :class:`videogen.ports_purchases.PurchaseStore`.

One item per store transaction, ``pk = PURCHASE#<store>#<transaction id>``, ``sk = PURCHASE``:
its user (absent for a refund recorded before any claim), pack, credits, status, environment, the
store notifications applied (``notifications``, a string set: each applied at most once) and
``rev`` (+1 on every write; a status change is conditioned on the revision it read).

Every change of credits is ONE ``TransactWriteItems`` of the record, the user's balance item
(``ADD``, so a clawback may take it below zero) and a ledger entry naming the purchase: a claim is
conditioned on the transaction id being unclaimed (``attribute_not_exists``), so a transaction
credits at most once, whoever posts it, however often, also concurrently.

AWS calls: a first claim is GetItem (the record: none) + TransactWriteItems (record, balance,
ledger entry) + GetItem (the balance it left) + UpdateItem (``balance_after`` on the record, for the
replays); a replay is one GetItem. A Google Play claim adds UpdateItem (``consumed_at``, once
Google confirmed the consume). A Play record still to consume carries ``active_pk = PLAYCONSUME``
and ``active_sk = created_at`` (the sparse ``Active`` index the reconciler already reads; no job
shard has that partition), removed with ``consumed_at``. A CONSUMPTION_REQUEST reads the user's
ledger since the purchase (Query) and their balance (GetItem).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from videogen.adapters.ddb import DynamoTable, cancel_reasons, error_is, failed_condition, from_item, to_item, to_values
from videogen.adapters.dynamo import balance_add, balance_key, ledger_put, user_pk
from videogen.domain.models import LedgerType, new_id, rfc3339
from videogen.domain.purchases import Purchase, Store, Usage

SK = "PURCHASE"
BY_USER = "PURCHASE#"  # gsi1sk prefix of a claimed record: PURCHASE#<pur_ id>, time-ordered like the id
PENDING_CONSUME = "PLAYCONSUME"  # active_pk of a Play purchase still to consume (the sparse Active index)


def purchase_key(store: Store, transaction_id: str) -> dict[str, Any]:
    return to_item({"pk": f"PURCHASE#{store}#{transaction_id}", "sk": SK})


def _item(p: Purchase, notifications: frozenset[str], rev: int) -> dict[str, Any]:
    values: dict[str, Any] = {
        "pk": f"PURCHASE#{p.store}#{p.transaction_id}",
        "sk": SK,
        "id": p.id,
        "store": p.store,
        "transaction_id": p.transaction_id,
        "product_id": p.product_id,
        "credits": p.credits,
        "status": p.status,
        "environment": p.environment,
        "created_at": p.created_at,
        "user_id": p.user_id,
        "pack_id": p.pack_id,
        "revoked_at": p.revoked_at,
        "price_milli": p.price_milli,
        "currency": p.currency,
        "purchase_token": p.purchase_token,
        "consumed_at": p.consumed_at,
        "rev": rev,
    }
    if notifications:
        values["notifications"] = set(notifications)
    if p.user_id is not None:  # the user's purchases, newest first (the ByUser index, beside their jobs)
        values["gsi1pk"], values["gsi1sk"] = user_pk(p.user_id), f"{BY_USER}{p.id}"
    if p.store == "google_play" and p.status == "granted" and p.consumed_at is None:
        values["active_pk"], values["active_sk"] = PENDING_CONSUME, p.created_at
    return to_item(values)


def _purchase(item: Mapping[str, Any]) -> Purchase:
    d = from_item(item)
    return Purchase(
        id=d["id"],
        store=d["store"],
        transaction_id=d["transaction_id"],
        product_id=d["product_id"],
        credits=int(d["credits"]),
        status=d["status"],
        environment=d["environment"],
        created_at=d["created_at"],
        user_id=d.get("user_id"),
        pack_id=d.get("pack_id"),
        revoked_at=d.get("revoked_at"),
        balance_after=d.get("balance_after"),
        price_milli=d.get("price_milli"),
        currency=d.get("currency"),
        notifications=frozenset(d.get("notifications") or ()),
        purchase_token=d.get("purchase_token"),
        consumed_at=d.get("consumed_at"),
        rev=int(d.get("rev", 0)),
    )


def _next_rev(seen: Purchase | None) -> int:
    """The revision a write of the record as read (None: absent) gives it; the ledger entry written
    in the same transaction carries it as ``purchase_seq``, the order of the purchase's entries."""
    return 1 if seen is None else seen.rev + 1


class DynamoPurchaseStore(DynamoTable):
    def list_purchases(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Purchase], str | None]:
        items, next_cursor = self._page(
            {
                "IndexName": "ByUser",
                "KeyConditionExpression": "gsi1pk = :pk AND begins_with(gsi1sk, :p)",
                "ExpressionAttributeValues": to_values({":pk": user_pk(user_id), ":p": BY_USER}),
            },
            limit,
            cursor,
            key_names=("pk", "sk", "gsi1pk", "gsi1sk"),
            owner=("gsi1pk", user_pk(user_id)),
            valid=lambda k: k["sk"] == SK and k["pk"].startswith("PURCHASE#") and k["gsi1sk"].startswith(BY_USER),
        )
        return [_purchase(to_item(i)) for i in items], next_cursor

    def get_purchase(self, store: Store, transaction_id: str) -> Purchase | None:
        item = self._db.get_item(
            TableName=self._table, Key=purchase_key(store, transaction_id), ConsistentRead=True
        ).get("Item")
        return _purchase(item) if item else None

    def _put(
        self, p: Purchase, replacing: Purchase | None, notifications: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """A Put of ``p`` while the record is still as read: absent, or ``replacing`` at its revision
        (whose applied notifications it keeps)."""
        request: dict[str, Any] = {"TableName": self._table}
        if replacing is None:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            request["ConditionExpression"] = "rev = :seen_rev"
            request["ExpressionAttributeValues"] = to_values({":seen_rev": replacing.rev})
        known = replacing.notifications if replacing is not None else frozenset()
        request["Item"] = _item(p, known | notifications, _next_rev(replacing))
        return request

    def _transact(self, what: str, items: list[dict[str, Any]]) -> bool:
        """Commit; False when the record's condition (the first item) failed."""
        try:
            self._call("transact_write_items", what, TransactItems=items)
        except ClientError as exc:
            if error_is(exc, "TransactionCanceledException") and cancel_reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                return False
            raise
        return True

    def claim(self, purchase: Purchase, replacing: Purchase | None = None) -> Purchase | None:
        assert purchase.user_id is not None and purchase.status == "granted"
        now = purchase.created_at
        put = self._put(purchase, replacing)
        items = [
            {"Put": put},
            balance_add(self._table, purchase.user_id, purchase.credits, now),
            ledger_put(
                self._table,
                purchase.user_id,
                new_id("le"),
                LedgerType.PURCHASE,
                purchase.credits,
                now,
                purchase_id=purchase.id,
                purchase_seq=_next_rev(replacing),
            ),
        ]
        if not self._transact(f"purchase {purchase.transaction_id}", items):
            return None
        written = replace(
            purchase, notifications=replacing.notifications if replacing else frozenset(), rev=_next_rev(replacing)
        )
        return self.answered(written)

    def answered(self, purchase: Purchase) -> Purchase:
        """The record with the balance the claim left, kept on the record so a replay answers the
        same body (written once: a concurrent change of the balance after it is not the claim's)."""
        assert purchase.user_id is not None
        balance = self._balance(purchase.user_id)
        if not self._set_once(
            purchase,
            "SET balance_after = :b",
            "attribute_not_exists(balance_after) AND user_id = :u",
            {":b": balance, ":u": purchase.user_id},
        ):
            stored = self.get_purchase(purchase.store, purchase.transaction_id)  # recorded by another answer
            assert stored is not None
            return stored
        return replace(purchase, balance_after=balance)

    def consumed(self, purchase: Purchase, at: str) -> None:
        """``consumed_at`` set once (not a status change: no ``rev``, so it races nothing)."""
        self._set_once(
            purchase,
            "SET consumed_at = :at REMOVE active_pk, active_sk",
            "attribute_exists(pk) AND attribute_not_exists(consumed_at)",
            {":at": at},
        )

    def _set_once(self, purchase: Purchase, update: str, condition: str, values: dict[str, Any]) -> bool:
        """One conditional update of the purchase record; False when its condition failed (it
        was written before)."""
        try:
            self._call(
                "update_item",
                f"purchase {purchase.transaction_id}",
                TableName=self._table,
                Key=purchase_key(purchase.store, purchase.transaction_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=to_values(values),
            )
        except ClientError as exc:
            if not failed_condition(exc):
                raise
            return False
        return True

    def pending_consumes(self, created_before: str, limit: int) -> list[Purchase]:
        items = self._db.query(
            TableName=self._table,
            IndexName="Active",
            KeyConditionExpression="active_pk = :p AND active_sk < :t",
            ExpressionAttributeValues=to_values({":p": PENDING_CONSUME, ":t": created_before}),
            Limit=limit,
        ).get("Items", [])
        found = []
        for item in items:  # the index may lag: read the record itself
            d = from_item(item)
            p = self.get_purchase(d["store"], d["transaction_id"])
            if p is not None and p.consumed_at is None:
                found.append(p)
        return found

    def _balance(self, user_id: str) -> int:
        item = self._db.get_item(TableName=self._table, Key=balance_key(user_id), ConsistentRead=True).get("Item")
        return int(from_item(item).get("balance", 0)) if item else 0

    def usage_since(self, user_id: str, since: str) -> Usage:
        """A Query of the user's ledger entries from ``since`` on (charges and refunds only), then
        the balance (GetItem)."""
        spent = 0
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "FilterExpression": "created_at >= :since AND #type IN (:charge, :refund)",
            "ProjectionExpression": "#type, amount",
            "ExpressionAttributeNames": {"#type": "type"},
            "ExpressionAttributeValues": to_values(
                {
                    ":pk": user_pk(user_id),
                    ":p": "LEDGER#",
                    ":since": since,
                    ":charge": LedgerType.CHARGE.value,
                    ":refund": LedgerType.REFUND.value,
                }
            ),
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**request)
            for entry in map(from_item, page.get("Items", [])):
                spent += int(entry["amount"]) if entry["type"] == LedgerType.CHARGE.value else -int(entry["amount"])
            if "LastEvaluatedKey" not in page:
                return Usage(spent=spent, balance=self._balance(user_id))
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _status_write(
        self, seen: Purchase, status: str, notification_id: str, sets: Mapping[str, Any], removes: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        names = {"#status": "status"}
        values = {":status": status, ":seen_rev": seen.rev, ":one": 1, ":nid": {notification_id}} | {
            f":{k}": v for k, v in sets.items()
        }
        expression = "SET #status = :status" + "".join(f", {k} = :{k}" for k in sets)
        expression += " ADD rev :one, notifications :nid"
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        return {
            "Update": {
                "TableName": self._table,
                "Key": purchase_key(seen.store, seen.transaction_id),
                "UpdateExpression": expression,
                "ConditionExpression": "rev = :seen_rev",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_values(values),
            }
        }

    def _move(self, seen: Purchase, notification_id: str, *, revoke: bool, revoked_at: str | None = None) -> bool:
        assert seen.user_id is not None
        now = rfc3339()
        if revoke:
            record = self._status_write(seen, "revoked", notification_id, {"revoked_at": revoked_at or now})
        else:
            record = self._status_write(seen, "granted", notification_id, {}, removes=("revoked_at",))
        amount = -seen.credits if revoke else seen.credits
        kind = LedgerType.CLAWBACK if revoke else LedgerType.PURCHASE
        items = [
            record,
            balance_add(self._table, seen.user_id, amount, now),
            ledger_put(
                self._table,
                seen.user_id,
                new_id("le"),
                kind,
                seen.credits,
                now,
                purchase_id=seen.id,
                purchase_seq=_next_rev(seen),
            ),
        ]
        return self._transact(f"purchase {seen.transaction_id}", items)

    def clawback(self, purchase: Purchase, notification_id: str, revoked_at: str) -> bool:
        return self._move(purchase, notification_id, revoke=True, revoked_at=revoked_at)

    def regrant(self, purchase: Purchase, notification_id: str) -> bool:
        return self._move(purchase, notification_id, revoke=False)

    def record_unclaimed(self, purchase: Purchase, notification_id: str, replacing: Purchase | None = None) -> bool:
        assert purchase.user_id is None
        request = self._put(purchase, replacing, frozenset({notification_id}))
        try:
            self._call("put_item", f"purchase {purchase.transaction_id}", **request)
        except ClientError as exc:
            if failed_condition(exc):
                return False
            raise
        return True
