"""User-facing errors of dermfuse_data.

Every problem a user can fix (a missing file, a renamed column, an unreadable image) is raised as a
:class:`DatasetError` whose message names the file (and row or column) and says what to do. The
`check` command and the training entry point print these messages without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset on disk is not what its publisher ships; the message says where and what to do."""

    def __init__(
        self, message: str, *, path: str | Path | None = None, row: int | None = None, hint: str | None = None
    ):
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f" (row {row})"
            where += ": "
        text = where + message
        if hint:
            text += f"\n  -> {hint}"
        super().__init__(text)
        self.path = None if path is None else Path(path)
        self.row = row
        self.hint = hint


class DataConfigError(DatasetError):
    """A data option that cannot work (``data.image_size: 0``): one line naming the key and what to set."""

    def __init__(self, key: str, message: str, hint: str | None = None):
        super().__init__(f"data.{key}: {message}", hint=hint)
        self.key = key
