"""A pytest plugin loaded only inside ``make mutate`` (``[tool.mutmut] pytest_add_cli_args``).

mutmut 3.x reads ``item._nodeid`` when it maps tests to the functions they call; pytest 9 keeps the
id as ``nodeid`` only. The alias below gives mutmut the id it asks for and changes nothing else.
"""

from __future__ import annotations

from _pytest import nodes

if not hasattr(nodes.Node, "_nodeid"):
    nodes.Node._nodeid = property(lambda self: self.nodeid)  # type: ignore[attr-defined]
