"""The Powertools logger, metrics and tracer shared by every handler and service.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` /
``POWERTOOLS_METRICS_NAMESPACE`` (set per function in template.yaml).
Never log tokens, keys or full webhook bodies: log ids and short summaries.

On AWS a process runs one function, one invocation at a time, and the logger's keys (the
Lambda context, the correlation id) are the process's. The local stack runs every function in
one process on many threads: :func:`keys_per_thread` makes those keys each thread's own
(Powertools' thread-safe keys), so a line carries its own function's name and job id.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit


class _Logger(Logger):
    """Powertools' Logger whose per-invocation keys can be kept per thread (:func:`keys_per_thread`);
    until then it is exactly Powertools' Logger."""

    _per_thread = False

    def append_keys(self, **additional_keys: object) -> None:
        if self._per_thread:
            self.thread_safe_append_keys(**additional_keys)
        else:
            super().append_keys(**additional_keys)

    def remove_keys(self, keys: Iterable[str]) -> None:
        if self._per_thread:
            self.thread_safe_remove_keys(keys)
        else:
            super().remove_keys(keys)

    def get_current_keys(self) -> dict[str, Any]:
        if self._per_thread:
            return {**super().get_current_keys(), **self.thread_safe_get_current_keys()}
        return super().get_current_keys()

    def get_correlation_id(self) -> str | None:
        if self._per_thread:
            return self.thread_safe_get_current_keys().get("correlation_id")
        return super().get_correlation_id()

    def structure_logs(self, append: bool = False, formatter_options: dict | None = None, **keys: Any) -> None:
        """``inject_lambda_context(clear_state=True)`` starts each invocation here: per thread, it
        replaces this thread's keys only and keeps the shared ones (service, level, ...)."""
        if self._per_thread and not append and formatter_options is None:
            self.thread_safe_clear_keys()
            self.thread_safe_append_keys(**keys)
        else:
            super().structure_logs(append=append, formatter_options=formatter_options, **keys)

    def clear_state(self) -> None:
        if self._per_thread:
            self.thread_safe_clear_keys()
        else:
            super().clear_state()

    def inject_lambda_context(self, lambda_handler: Callable[..., Any] | None = None, **options: Any) -> Any:  # type: ignore[override]
        """Powertools' decorator; per thread, a handler invoked inside another's invocation on the
        same thread gives the outer one its keys back when it returns."""
        if lambda_handler is None:
            return functools.partial(self.inject_lambda_context, **options)
        inner = super().inject_lambda_context(lambda_handler, **options)

        @functools.wraps(lambda_handler)
        def handler(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            if not self._per_thread:
                return inner(event, context, *args, **kwargs)
            outer = dict(self.thread_safe_get_current_keys())
            try:
                return inner(event, context, *args, **kwargs)
            finally:
                self.thread_safe_clear_keys()
                self.thread_safe_append_keys(**outer)

        return handler


logger = _Logger(service="videogen", utc=True)
metrics = Metrics(namespace="videogen")
tracer = Tracer(service="videogen")

trace_handler = functools.partial(tracer.capture_lambda_handler, capture_response=False, capture_error=False)
"""The handlers' X-Ray decorator: a segment per invocation that never records the response
(presigned video URLs) nor the exception text (an HTTP error can carry a fal or S3 URL). The
template's Globals say the same (POWERTOOLS_TRACER_CAPTURE_RESPONSE/ERROR=false)."""

__all__ = [
    "MetricUnit",
    "count",
    "keys_per_thread",
    "logger",
    "metrics",
    "quiet_empty_metrics",
    "trace_handler",
    "tracer",
]


def keys_per_thread() -> None:
    """Keep every invocation's log keys in its own thread, for a process that runs many functions
    at once (the local stack). Keys appended before stay shared by every thread."""
    if not logger._per_thread:
        logger.clear_state()  # no earlier invocation's keys left shared
        logger._per_thread = True


def quiet_empty_metrics() -> None:
    """For the local stack (metrics disabled there): no "No application metrics to publish"
    UserWarning, a line on stderr that is not JSON, after each invocation that counted nothing.
    Never called on AWS, where the warning stays as Powertools emits it."""
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def count(name: str, value: int = 1) -> None:
    """Add a count metric (flushed by the handler's ``log_metrics`` decorator)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
