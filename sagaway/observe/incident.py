"""Old import path of `IncidentTracker` and `NotifyPolicy`, kept only because
`sagaway/demo/driver.py` imports them from here; new code imports `sagaway.observe.alarms`."""

from sagaway.observe.alarms._incident import IncidentTracker, NotifyPolicy

__all__ = ["IncidentTracker", "NotifyPolicy"]
