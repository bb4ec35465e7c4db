"""Faults of the store file itself, translated in one place into one message each.

DuckDB and the OS report a damaged file, a full disk, a read-only folder or a newer file format
as ``duckdb.Error``s (``IOException``, ``TransactionException``, ``FatalException``, plain
``Error`` "Corrupt database file") or ``OSError``s, often with the real cause buried in the text
("database has been invalidated ... Original error: ... No space left on device"). ``fault``
turns any of them into a ``StoreFault`` (a ``SelfaugError``, exit 2) that says the cause, the
file and the fix; everything it does not recognize is left alone (a bug, not a fault).

Used by ``lock.connect`` (opening), ``open_store`` (migrating), every public ``Store`` method
(``guard_methods``), ``verify`` (which *reports* damage), the runner (a full disk fails the step,
exit 1) and the CLI's last resort for code that queries ``store.con`` directly.
"""

from __future__ import annotations

import errno
import functools
import re
from pathlib import Path
from typing import Any, Callable

from selfaug_compiler.errors import SelfaugError

DAMAGED, DISK_FULL, READ_ONLY, NEWER_FORMAT = "damaged", "disk_full", "read_only", "newer_format"

_PATTERNS: list[tuple[str, re.Pattern]] = [
    (DISK_FULL, re.compile(r"no space left on device|disk quota exceeded|file too large", re.I)),
    (READ_ONLY, re.compile(r"read-only file system|permission denied|operation not permitted", re.I)),
    (NEWER_FORMAT, re.compile(r"database file with version number|storage version|created with a newer", re.I)),
    (DAMAGED, re.compile(r"not a valid duckdb database|could not read enough bytes|corrupt database file|"
                         r"checksum .* does not match|failure while replaying wal", re.I)),
]
_ERRNOS = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EFBIG: DISK_FULL,
           errno.EROFS: READ_ONLY, errno.EACCES: READ_ONLY, errno.EPERM: READ_ONLY}
_FILE_IN_MESSAGE = re.compile(r'file "([^"]+)"')


class StoreFault(SelfaugError):
    """The store file cannot be used as it is: ``kind`` is damaged, disk_full, read_only or
    newer_format; ``path`` the store file; ``detail`` the first line of the underlying error."""

    def __init__(self, kind: str, path: str | Path | None, detail: str) -> None:
        self.kind, self.path, self.detail = kind, str(path) if path else None, detail
        message, hint = _explain(kind, self.path or "STORE")
        super().__init__(message, found=detail, hint=hint)


def _explain(kind: str, path: str) -> tuple[str, str]:
    """(message, hint); ``path`` is "STORE" when the error did not name the file."""
    folder = "its folder" if path == "STORE" else str(Path(path).parent)
    if kind == DISK_FULL:
        return (f"the disk holding the store {path} is full (nothing was committed by this command)",
                f"free space on the disk of {folder}, or point --store / SELFAUG_STORE to a disk with room, "
                "then run the same command again")
    if kind == READ_ONLY:
        return (f"the store {path} cannot be written: its folder or file is read-only",
                f"make {folder} writable (DuckDB also writes {Path(path).name}.wal next to the file), or copy "
                "the store to a writable folder and pass --store; reading commands (data ls/show/verify) still work")
    if kind == NEWER_FORMAT:
        return (f"the store {path} was written by a newer DuckDB than this selfaug uses",
                "upgrade selfaug (and duckdb) to open it")
    return (f"the store file {path} is damaged (truncated or overwritten)",
            f"restore {path} from a backup; or move it aside (mv {path} {path}.damaged) and rebuild: "
            "`selfaug run` recomputes every step and `selfaug data import` re-imports files")


def classify(exc: BaseException) -> str | None:
    """The fault kind of a DuckDB/OS error, or None when it is not a fault of the store file."""
    if isinstance(exc, StoreFault):
        return exc.kind
    if isinstance(exc, OSError) and exc.errno in _ERRNOS:
        return _ERRNOS[exc.errno]
    if not _is_duckdb_error(exc) and not isinstance(exc, OSError):
        return None
    text = str(exc)
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    return None


def _is_duckdb_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb")


def fault(exc: BaseException, path: str | Path | None = None) -> StoreFault | None:
    """``exc`` as a ``StoreFault`` (None when it is not one). ``path`` defaults to the file named
    in the message."""
    if isinstance(exc, StoreFault):
        return exc
    kind = classify(exc)
    if kind is None:
        return None
    text = str(exc)
    if path is None:
        named = _FILE_IN_MESSAGE.search(text)
        path = named.group(1) if named else getattr(exc, "filename", None)
        if isinstance(path, str) and path.endswith(".wal"):
            path = path[: -len(".wal")]
    original = text.split("Original error:", 1)[-1]
    detail = " ".join(original.split())[:300]
    return StoreFault(kind, path, detail)


def reraise_as_fault(exc: BaseException, path: str | Path | None = None) -> None:
    """Raise ``exc``'s ``StoreFault`` from it when it is one; return otherwise."""
    translated = fault(exc, path)
    if translated is not None and translated is not exc:
        raise translated from exc


def guard_methods(cls: type) -> type:
    """Class decorator: every public method of ``cls`` raises ``StoreFault`` for store faults
    (``self.path`` names the file)."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not callable(member) or name in ("transaction",):
            continue
        setattr(cls, name, _guarded(member))
    return cls


def _guarded(method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a store fault
            reraise_as_fault(exc, getattr(self, "path", None))
            raise

    return wrapper
