"""`SqlStore`: the Store contract written once for SQLite and PostgreSQL.

Backends (`sqlite.py`, `postgres.py`) supply connections, transactions, the placeholder
style and the row-locking clauses; the statements are grouped by what they are about.
"""

from __future__ import annotations

from sagaway.store._sql_access import AccessStatements
from sagaway.store._sql_browse import BrowseStatements
from sagaway.store._sql_claims import ClaimStatements
from sagaway.store._sql_clock import ClockStatements
from sagaway.store._sql_fanout import FanoutStatements
from sagaway.store._sql_forks import ForkStatements
from sagaway.store._sql_messages import MessageStatements
from sagaway.store._sql_metrics import MetricStatements
from sagaway.store._sql_runs import RunStatements
from sagaway.store._sql_shared import SharedStateStatements

__all__ = ["SqlStore"]


class SqlStore(
    RunStatements, ClaimStatements, SharedStateStatements, MetricStatements, MessageStatements,
    AccessStatements, ForkStatements, BrowseStatements, FanoutStatements, ClockStatements,
):  # fmt: skip
    """Every statement of the Store contract; subclasses provide connections and dialect
    hooks (see `_sql_core.SqlCore`)."""
