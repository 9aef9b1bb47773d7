"""A boto3 client that records each operation it is asked for (a transaction with its items), to pin
what a path costs in AWS calls."""

from __future__ import annotations

from typing import Any


class Recording:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            items = kwargs.get("TransactItems")
            self.calls.append(name + (f"[{'+'.join(next(iter(i)) for i in items)}]" if items else ""))
            return method(**kwargs)

        return call
