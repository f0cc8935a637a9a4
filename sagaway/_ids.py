"""Identifiers sagaway makes: time-ordered unique ids for runs and messages."""

from __future__ import annotations

import time
import uuid

__all__ = ["time_ordered_id"]


def time_ordered_id() -> str:
    """A time-ordered unique id (UUID version 7 layout): ids made later sort later."""
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | (uuid.uuid4().int & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))
