"""Where dermfuse_data writes (``$DERMFUSE_CACHE``) and how: atomically, readable by the group, and with
errors that name the folder when the disk is full or not writable.

Splits, image caches and synthetic miniatures are often shared by a lab on a cluster (one cache folder,
many users of one group). ``tempfile`` creates files ``0600`` and folders ``0700``; :func:`shareable`
gives them the permissions an ordinary ``open``/``mkdir`` would (``0666``/``0777`` less the umask, so
group-readable under the usual umasks 002 and 022). :func:`storage_error` turns the ``OSError`` of a
full disk, an exceeded quota, a read-only filesystem or a missing permission into a
:class:`~dermfuse_data.errors.DatasetError` naming the folder and the ``DERMFUSE_CACHE`` variable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from dermfuse_data.errors import DatasetError

CACHE_ENV = "DERMFUSE_CACHE"
#: errno values that mean "this folder cannot take the file", with what each means to a user
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this filesystem or limit",
    errno.EROFS: "read-only filesystem",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
#: the same conditions as Arrow words them when it drops the errno
_STORAGE_WORDS = {
    "no space left": errno.ENOSPC,
    "quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
}


def default_cache_dir() -> Path:
    """``$DERMFUSE_CACHE`` if set, else ``.cache/dermfuse`` in the working directory."""
    return Path(os.environ.get(CACHE_ENV, ".cache/dermfuse")).resolve()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(path: str | Path) -> None:
    """Give ``path`` (made by ``tempfile``) the permissions ``open``/``mkdir`` would have given it.

    Files become ``0666 & ~umask``, folders ``0777 & ~umask``; a path owned by someone else is left as is.
    """
    path = Path(path)
    try:
        full = 0o777 if stat.S_ISDIR(path.stat().st_mode) else 0o666
        os.chmod(path, full & ~_umask())
    except PermissionError:
        pass


def mark_used(path: str | Path) -> None:
    """Set ``path``'s modification time to now: ``cache prune`` removes what was not used for long."""
    with contextlib.suppress(OSError):  # someone else's file in a shared cache: its age is theirs to keep
        os.utime(path)


def storage_errno(err: OSError) -> int | None:
    """The errno of a storage failure (full disk, quota, permission, ...), or ``None`` for other errors.

    Arrow raises plain ``OSError`` whose ``errno`` may be unset; its message is read then.
    """
    if err.errno in _STORAGE_ERRNOS:
        return err.errno
    text = str(err).lower()
    return next((code for words, code in _STORAGE_WORDS.items() if words in text), None)


def storage_error(err: OSError, folder: str | Path, writing: str) -> DatasetError | None:
    """A :class:`DatasetError` naming ``folder`` and ``DERMFUSE_CACHE`` for a storage ``OSError``, else None.

    ``writing``: what was being written (``"the image cache"``, ``"the split file"``).
    """
    code = storage_errno(err)
    if code is None:
        return None
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f"make the folder writable for you, or set {CACHE_ENV} (or data.cache_dir) to a folder you can write"
    else:
        hint = (
            f"free space there (python -m dermfuse_data cache prune --older-than 30 removes caches unused for "
            f"30 days), or set {CACHE_ENV} (or data.cache_dir) to a larger disk"
        )
    return DatasetError(f"cannot write {writing}: {_STORAGE_ERRNOS[code]} ({err})", path=folder, hint=hint)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed into place (a kill leaves the old file).

    The file is :func:`shareable`; a full disk or a folder without write permission raises
    :func:`storage_error`'s :class:`DatasetError`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        shareable(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise (storage_error(err, path.parent, f"{path.name}") or err) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
