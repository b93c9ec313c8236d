"""Files only the server's user may read: the state DB holds webhook secrets, the spool
and time series hold the plant's data.

SQLite creates its database with the process umask (usually 0644, world-readable)
and gives the -wal/-shm files the database file's mode, so creating the file 0600
before SQLite opens it keeps all three private.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600


def ensure_private_file(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; take group/other access from an existing one."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            try:
                os.chmod(p, mode & 0o700)
            except PermissionError:
                log.warning("%s is readable by other users (mode %o)", p, mode)
        return
    os.close(fd)
