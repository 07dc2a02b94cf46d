"""Files of a run folder written atomically where they live: a kill or a full disk never leaves half a file.

:func:`atomic_write` writes to a temporary file *in the destination's own folder* (so the final rename
never crosses a filesystem, whatever ``$TMPDIR`` is), flushes and fsyncs it, then ``os.replace``-s it
over the destination and fsyncs the folder. Until that rename the previous file is untouched; after
it the new one is complete. A failed write (``ENOSPC``, a bug, ``KeyboardInterrupt``) removes its
temporary file; a process killed mid-write leaves one (``.<name>.<pid>.<token>.tmp``), which
:func:`remove_stale_temp_files` deletes the next time the folder is used.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
#: errnos that mean "this folder cannot take the file" (full, over quota, read-only, not permitted)
FOLDER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.<pid>.<token>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` atomically (see module doc); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666: the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporary files :func:`atomic_write` left in ``folder`` (a killed writer's)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file())


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder``; returns them.

    Only call it where no other process writes at the same time (one run per folder).
    """
    removed = stale_temp_files(folder)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def folder_os_error(err: BaseException) -> OSError | None:
    """The disk-full / read-only / permission ``OSError`` behind ``err`` (torch wraps it in a RuntimeError)."""
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in FOLDER_ERRNOS:
            return cause
    return None
