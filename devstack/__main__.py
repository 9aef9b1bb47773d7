"""``python -m devstack`` (what ``make run`` does): serve the whole system locally."""

from devstack.stack import main

main()
