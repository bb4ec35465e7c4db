"""Writing files atomically with the permissions any other program would give them.

``tempfile.mkstemp`` creates its file 0600 and ``mkdtemp`` its folder 0700, and a rename keeps
those modes: a report or results file written that way is unreadable to the rest of a team.
Every file selfaug writes through a temporary name goes through here, so it gets the mode
``open()`` would give it: 0666 (folders 0777) minus the process umask (0644 / 0755 under the
usual umask 022).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable read is set-and-restore
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def write_atomic(path: Path | str, data: str | bytes, *, executable: bool = False) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place: a crash
    leaves the old file or the new one, never half of one. The file gets ``file_mode()``, or
    ``dir_mode()`` (the umask's rwx bits) when ``executable``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, dir_mode() if executable else file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_temp_dir(target: Path) -> Path:
    """A temporary folder beside ``target`` (to be renamed onto it), with ``dir_mode()``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, dir_mode())
    return tmp
