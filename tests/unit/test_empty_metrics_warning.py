"""The local stack's output is JSON lines: Powertools' "No application metrics to publish"
UserWarning is silenced there (observability.quiet_empty_metrics, called by devstack only) and
left as Powertools emits it everywhere else."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Metrics

from videogen.observability import quiet_empty_metrics


def _empty_flush() -> None:
    empty = Metrics(namespace="test-empty")  # Powertools shares one metric set across instances:
    empty.clear_metrics()  # what an earlier test counted would be flushed instead of the warning
    empty.flush_metrics()


def _empty_flush_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _empty_flush()
    return [str(w.message) for w in seen if issubclass(w.category, UserWarning)]


def test_without_the_local_stacks_filter_powertools_warns_as_on_aws() -> None:
    assert any("No application metrics to publish" in message for message in _empty_flush_warnings())


def test_the_local_stacks_filter_silences_only_that_warning() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_empty_metrics()
        _empty_flush()
        warnings.warn("another warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["another warning"]
