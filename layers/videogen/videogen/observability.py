"""The Powertools logger, metrics and tracer shared by every handler and service.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` /
``POWERTOOLS_METRICS_NAMESPACE`` (set per function in template.yaml).
Never log tokens, keys or full webhook bodies: log ids and short summaries.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="videogen", utc=True)
metrics = Metrics(namespace="videogen")
tracer = Tracer(service="videogen")

__all__ = ["MetricUnit", "count", "logger", "metrics", "tracer"]


def count(name: str, value: int = 1) -> None:
    """Add a count metric (flushed by the handler's ``log_metrics`` decorator)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
