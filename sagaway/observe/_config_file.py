"""Reading a configuration file (an SLO specification, `alarms.yaml`) with a one-line error."""

from __future__ import annotations

import os

__all__ = ["read_config_text"]


def read_config_text(path: str | os.PathLike[str], error: type[Exception], what: str) -> str:
    """The text of a UTF-8 configuration file, or `error` naming the file and the problem
    (`what` names the file in the message, e.g. "the file")."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
