"""Old import path of `parse_duration`, kept only because `sagaway/cli/runs.py` imports it from
here; new code imports `sagaway.observe.slo` (where the SLO specification now lives)."""

from sagaway.observe._time import parse_duration

__all__ = ["parse_duration"]
