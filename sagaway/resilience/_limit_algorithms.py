"""The two ways an `AdaptiveLimit` moves its limit: AIMD (loss-based) and gradient
(latency-based). Each holds its parameters and state; the limit calls them under its lock,
so neither locks on its own.

AIMD follows Netflix concurrency-limits' `AIMDLimit` and TCP congestion avoidance: the limit
grows by `increase` per round of calls (by `increase / limit` per success) while the calls
use at least half of it, and is multiplied by `backoff_ratio` on a drop (once per round:
drops of calls admitted before the last backoff do not back off again).

Gradient follows Envoy's adaptive concurrency gradient controller: latencies are summarised
per `window` (their `percentile`) into a sample; `gradient = min_rtt * (1 + buffer) / sample`,
kept within [0.5, 2]; `limit = gradient * limit + sqrt(gradient * limit)`. `min_rtt` is
measured by pinning the limit to `probe_concurrency` until `probe_samples` calls finished, at
the start and every `probe_interval` seconds (plus up to `probe_jitter` of it), and when the
limit sat at its minimum for five windows in a row.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

__all__ = ["ALGORITHMS", "Aimd", "Algorithm", "Gradient"]

# Samples kept per window or probe: enough for any percentile, bounded under any load.
_MAX_SAMPLES = 10_000
# Envoy re-measures min_rtt when the limit sat at its minimum this many windows in a row.
_WINDOWS_AT_MIN_BEFORE_PROBE = 5


def _check(where: str, name: str, value: Any, ok: bool, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        raise ValueError(f"{where}: {name}={value!r} must be {expected}")


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank `fraction` percentile of non-empty `samples` (sorted in place)."""
    samples.sort()
    rank = max(1, math.ceil(fraction * len(samples)))
    return samples[rank - 1]


class Algorithm:
    """What an `AdaptiveLimit` asks of its algorithm (called under the limit's lock)."""

    name = ""
    limit: float

    def admits(self, limit: float) -> float:
        """The limit to admit calls against now (a probe may pin it lower)."""
        return limit

    def epoch(self) -> int:
        """A number that changes when samples of calls admitted before stop being useful."""
        return 0

    def on_success(self, now: float, rtt: float, in_flight: int, epoch: int, seq: int) -> None:
        """The `seq`-th call, admitted in `epoch` with `in_flight` calls (itself included)
        held, finished after `rtt` seconds."""
        raise NotImplementedError

    def on_drop(self, seq: int) -> None:
        """The `seq`-th call signalled overload."""
        raise NotImplementedError

    def admitted(self, seq: int) -> None:
        """The `seq`-th call was admitted."""

    def describe(self) -> dict[str, Any]:
        """The algorithm's measurements, for stats pages."""
        return {}


class _Bounds:
    """The limit's bounds, and a multiplicative backoff at most once per round of calls."""

    def __init__(self, initial: int, min_limit: int, max_limit: int, backoff_ratio: float) -> None:
        self.limit = float(initial)
        self.min_limit, self.max_limit = min_limit, max_limit
        self.backoff_ratio = backoff_ratio
        self._backoff_seq = -1  # calls numbered below this were admitted before the backoff
        self._last_seq = 0

    def clamp(self, limit: float) -> float:
        return min(float(self.max_limit), max(float(self.min_limit), limit))

    def admitted(self, seq: int) -> None:
        self._last_seq = seq

    def on_drop(self, seq: int) -> None:
        if seq < self._backoff_seq:
            return  # the same round's overload: backed off for it already
        self.limit = self.clamp(self.limit * self.backoff_ratio)
        self._backoff_seq = self._last_seq + 1


class Aimd(_Bounds, Algorithm):
    """Additive increase, multiplicative decrease (see the module docstring)."""

    name = "aimd"

    def __init__(
        self,
        where: str,
        initial: int,
        min_limit: int,
        max_limit: int,
        *,
        backoff_ratio: float = 0.5,
        increase: float = 1.0,
        timeout: float | None = None,
    ) -> None:
        _check(where, "backoff_ratio", backoff_ratio, 0 < backoff_ratio < 1, "in (0, 1)")
        _check(where, "increase", increase, increase > 0, "> 0 (calls per round)")
        if timeout is not None:
            _check(where, "timeout", timeout, timeout > 0, "> 0 seconds, or None")
        super().__init__(initial, min_limit, max_limit, backoff_ratio)
        self.increase = float(increase)
        self.timeout = timeout

    def on_success(self, now: float, rtt: float, in_flight: int, epoch: int, seq: int) -> None:
        if self.timeout is not None and rtt > self.timeout:
            self.on_drop(seq)  # as late as a timeout: overload, whatever the answer
            return
        if in_flight * 2 >= self.limit:  # app-limited below half: no evidence to grow on
            self.limit = self.clamp(self.limit + self.increase / self.limit)


class Gradient(_Bounds, Algorithm):
    """Latency gradient against a measured no-load latency (see the module docstring)."""

    name = "gradient"

    def __init__(
        self,
        where: str,
        initial: int,
        min_limit: int,
        max_limit: int,
        *,
        window: float = 0.1,
        percentile: float = 0.5,
        buffer: float = 0.25,
        probe_interval: float = 60.0,
        probe_jitter: float = 0.1,
        probe_samples: int = 50,
        probe_concurrency: int = 3,
        backoff_ratio: float = 0.9,
        rng: Callable[[], float] = random.random,
    ) -> None:
        _check(where, "window", window, window > 0, "> 0 seconds")
        _check(where, "percentile", percentile, 0 < percentile <= 1, "in (0, 1], e.g. 0.9 for p90")
        _check(where, "buffer", buffer, 0 <= buffer <= 10, "in [0, 10] (0.25: 25 % above min_rtt)")
        _check(where, "probe_interval", probe_interval, probe_interval > 0, "> 0 seconds")
        _check(where, "probe_jitter", probe_jitter, 0 <= probe_jitter <= 1, "in [0, 1]")
        for name, value in (
            ("probe_samples", probe_samples),
            ("probe_concurrency", probe_concurrency),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: {name}={value!r} must be an int >= 1")
        _check(where, "backoff_ratio", backoff_ratio, 0 < backoff_ratio < 1, "in (0, 1)")
        super().__init__(initial, min_limit, max_limit, backoff_ratio)
        self.window, self.percentile, self.buffer = float(window), percentile, buffer
        self.probe_interval, self.probe_jitter = float(probe_interval), probe_jitter
        self.probe_samples, self.probe_concurrency = probe_samples, probe_concurrency
        self._rng = rng
        self.min_rtt: float | None = None
        self.sample_rtt: float | None = None
        self.gradient = 1.0
        self._epoch = 0
        self._probing = True  # min_rtt is measured first
        self._samples: list[float] = []
        self._window_end: float | None = None
        self._window_peak = 0  # the most calls in flight seen in this window
        self._next_probe = math.inf
        self._windows_at_min = 0

    def admits(self, limit: float) -> float:
        return min(limit, float(self.probe_concurrency)) if self._probing else limit

    def epoch(self) -> int:
        return self._epoch

    def on_success(self, now: float, rtt: float, in_flight: int, epoch: int, seq: int) -> None:
        if epoch != self._epoch:
            return  # admitted before a probe started or ended: not this phase's latency
        if len(self._samples) < _MAX_SAMPLES:
            self._samples.append(rtt)
        if self._probing:
            if len(self._samples) >= self.probe_samples:
                self.min_rtt = percentile(self._samples, self.percentile)
                self._start_phase(now, probing=False)
                jitter = self.probe_jitter * self._rng()
                self._next_probe = now + self.probe_interval * (1 + jitter)
            return
        self._window_peak = max(self._window_peak, in_flight)
        if self._window_end is None:
            self._window_end = now + self.window
        if now >= self._window_end:
            self._update(percentile(self._samples, self.percentile))
            self._samples.clear()
            self._window_peak = in_flight
            self._window_end = now + self.window
        if now >= self._next_probe or self._windows_at_min >= _WINDOWS_AT_MIN_BEFORE_PROBE:
            self._start_phase(now, probing=True)

    def _update(self, sample: float) -> None:
        assert self.min_rtt is not None
        self.sample_rtt = sample
        target = self.min_rtt * (1 + self.buffer)
        gradient = 2.0 if sample <= 0 else min(2.0, max(0.5, target / sample))
        self.gradient = gradient
        scaled = gradient * self.limit
        grown = self.clamp(scaled + math.sqrt(scaled))
        if grown > self.limit and self._window_peak * 2 < self.limit:
            return  # app-limited: low latency at low load says nothing about more load
        self.limit = grown
        at_min = self.limit <= self.min_limit
        self._windows_at_min = self._windows_at_min + 1 if at_min else 0

    def _start_phase(self, now: float, *, probing: bool) -> None:
        self._epoch += 1
        self._probing = probing
        self._samples.clear()
        self._window_end = None
        self._window_peak = 0
        self._windows_at_min = 0

    def describe(self) -> dict[str, Any]:
        return {
            "min_rtt": self.min_rtt,
            "sample_rtt": self.sample_rtt,
            "gradient": round(self.gradient, 4),
            "probing": self._probing,
        }


ALGORITHMS: dict[str, type[Aimd] | type[Gradient]] = {"aimd": Aimd, "gradient": Gradient}
