"""Resilience primitives: retries with backoff and jitter, usable alone or as step options."""

from sagaway.resilience.retry import Jitter, Permanent, Retry

__all__ = ["Jitter", "Permanent", "Retry"]
