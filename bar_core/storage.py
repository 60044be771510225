"""What a refused write means, in one line: a full disk, a used-up quota, a read-only file system."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path


def disk_full(path: Path) -> bool:
    """Less than 1 MiB free where `path` is: what a write that failed for no stated reason ran into."""
    try:
        return shutil.disk_usage(path).free < 1 << 20
    except OSError:
        return False


def storage_problem(exc: BaseException) -> str | None:
    """A one-line message for a write the run folder's disk refused (full, over quota, read-only), or
    None when `exc` is something else."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
        return None
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
            errno.EROFS: "the file system is read-only", errno.EIO: "the disk reported an I/O error"}[exc.errno]
    where = f" writing {exc.filename}" if exc.filename else ""
    return (f"{what}{where}: the run stopped and its last good checkpoint is kept; free some space, then "
            "continue it (--resume, or Continue this run in the app)")
