"""How values and errors are stored: JSON text, with errors that say what could not be stored.

Every value a saga hands to sagaway (inputs, step arguments and results, signal payloads) is
stored as JSON, and the saga always continues with the value read back from that JSON, so a
replay sees exactly what the first execution saw (a tuple becomes a list the first time, not
only after a crash).
"""

from __future__ import annotations

import hashlib
import json
import sys
import traceback
from typing import Any

from sagaway.errors import RemoteError, SerializationError
from sagaway.store.base import ErrorRecord

__all__ = [
    "SCALARS",
    "arguments_digest",
    "dumps",
    "error_record",
    "input_hash",
    "loads",
    "rebuild_error",
]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_CANONICAL = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=True
)
loads = json.loads
# Types whose values JSON gives back exactly as they went in.
SCALARS = frozenset({str, int, float, bool, type(None)})


def dumps(value: Any, what: str, *, canonical: bool = False) -> str:
    """`value` as JSON text; raises SerializationError naming `what` and the bad type."""
    try:
        return (_CANONICAL if canonical else _ENCODER).encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} cannot be stored as JSON ({exc}): pass and return plain data — dict, list, "
            "str, int, float, bool, None (e.g. dataclasses.asdict(obj), str(uuid), "
            "datetime.isoformat())"
        ) from None


def input_hash(text: str) -> str:
    """A digest identifying a saga input, used to detect idempotency-key reuse."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_NO_ARGUMENTS = hashlib.sha256(b"[[],{}]").hexdigest()[:16]


def arguments_digest(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str | None:
    """A digest of a step call's arguments, compared on replay; None when they are not JSON
    data (such a step takes them without a check)."""
    if not args and not kwargs:
        return _NO_ARGUMENTS
    try:
        text = _CANONICAL.encode([args, kwargs])
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    try:
        return json.loads(_ENCODER.encode(value))
    except (TypeError, ValueError):
        return None


def error_record(
    exc: BaseException,
    *,
    phase: str | None = None,
    position: int | None = None,
    step: str | None = None,
    original: ErrorRecord | None = None,
) -> ErrorRecord:
    """How `exc` is recorded: its class, message, `args` and attributes (those that are
    plain data), traceback, and where it happened."""
    cls = type(exc)
    state = {}
    for key, value in getattr(exc, "__dict__", {}).items():
        plain = _plain(value)
        if plain is not None or value is None:
            state[key] = plain
    return ErrorRecord(
        type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        args=_plain(list(exc.args)),
        state=state or None,
        traceback="".join(traceback.format_exception(exc)).rstrip(),
        phase=phase,
        position=position,
        step=step,
        original=original,
    )


def _find_class(type_name: str) -> type[BaseException] | None:
    module_name, _, qualname = type_name.rpartition(".")
    # Only classes of modules this process already imported: reading a journal never imports.
    module = sys.modules.get(module_name)
    while module is None and "." in module_name:
        module_name, _, outer = module_name.rpartition(".")
        qualname = f"{outer}.{qualname}"
        module = sys.modules.get(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def rebuild_error(record: ErrorRecord | str | None) -> BaseException | None:
    """The exception a recorded error describes: an instance of the original class when
    this process has it and it can be rebuilt from the recorded arguments, else a
    `RemoteError` carrying the type name, message and traceback."""
    if isinstance(record, str):
        record = ErrorRecord.from_json(record)
    if record is None:
        return None
    cls = _find_class(record.type)
    if cls is not None and record.args is not None:
        try:
            # As unpickling does: no constructor call, the recorded args and attributes.
            exc = cls.__new__(cls, *record.args)
            exc.args = tuple(record.args)
            if isinstance(record.state, dict):
                exc.__dict__.update(record.state)
            str(exc)  # a class whose message needs what was not recorded is not rebuilt
            return exc
        except Exception:
            pass
    return RemoteError(record.type, record.message, record.traceback)
