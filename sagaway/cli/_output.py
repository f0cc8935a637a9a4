"""Files the command line writes (reports, rules): whole or not at all.

A report written over a full disk would otherwise leave a truncated file, or truncate the
good one it replaces. `write_output` writes beside the target and renames over it once the
text is safely written; on failure the target is as it was and the error is one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile

from sagaway.cli import CliError

__all__ = ["OUTPUT_ERRNOS", "write_output"]

# Errors of writing that no retry of the command fixes by itself: say so in one line.
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def write_output(path: str, text: str) -> None:
    """Write `text` to `path` atomically. Raises CliError naming the file and the cause."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".sagaway-", dir=folder)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        hint = " (free space on that disk)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise CliError(
            f"cannot write {path}: {exc.strerror}{hint}; nothing was written to it"
        ) from None
