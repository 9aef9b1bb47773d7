"""The DynamoDB adapter (moto) against the transition table written out by hand
(tests/unit/test_transition_literal.py): every write from every state lands where the literal
table says, and every move it does not list is rejected with nothing changed."""

from __future__ import annotations

from tests.integration.test_transition_table import WRITES, walk
from tests.unit.test_transition_literal import LEGAL


def test_the_literal_table_names_every_write_of_the_adapter():
    assert {w.name for w in WRITES} == set(LEGAL)


def test_every_write_of_the_adapter_from_every_state_follows_the_literal_table(stack):
    assert walk(stack, lambda start, write, job: LEGAL[write.name].get(start)) == []
