"""Errors a user can fix, printed as one line (the root cause's message, no traceback, exit status 2).

A configured class that cannot be built (an unknown timm backbone, dataset or method name, a missing file) fails
inside jsonargparse, which wraps the cause in a dump of the whole parsed config. :class:`ConfigurationError`
carries the root cause's message instead, and :func:`one_line_errors` prints it at the command's entry point.
Causes that are not the configuration's (a bug: ``AttributeError``, ``RuntimeError`` ...) keep their traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from dermfuse_data.errors import DatasetError

#: root causes that say something about the configuration or the data (everything else is a bug: traceback)
USER_FIXABLE = (ValueError, LookupError, FileNotFoundError)


class ConfigurationError(ValueError):
    """A configured class could not be built; the message is its root cause's (``__cause__`` keeps the chain)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause).strip() or type(cause).__name__)
        self.root = cause


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception of ``err``'s ``__cause__`` / ``__context__`` chain."""
    seen = {id(err)}
    while True:
        nxt = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if nxt is None or id(nxt) in seen:
            return err
        seen.add(id(nxt))
        err = nxt


def configuration_error(err: BaseException) -> ConfigurationError | None:
    """A :class:`ConfigurationError` for ``err`` if its root cause is user-fixable (:data:`USER_FIXABLE`), else None."""
    cause = root_cause(err)
    return ConfigurationError(cause) if isinstance(cause, USER_FIXABLE) else None


def message_of(err: BaseException) -> str:
    """What the terminal shows for a user-fixable error: ``dataset error: ...`` or ``error: ...``."""
    cause = err.root if isinstance(err, ConfigurationError) else err
    return f"dataset error: {cause}" if isinstance(cause, DatasetError) else f"error: {cause}"


@contextlib.contextmanager
def one_line_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn :class:`ConfigurationError`, :class:`DatasetError` and ``extra`` exceptions into their message on stderr
    and exit status 2; everything else propagates with its traceback."""
    try:
        yield
    except (ConfigurationError, DatasetError, *extra) as err:
        print(message_of(err), file=sys.stderr)
        raise SystemExit(2) from None
