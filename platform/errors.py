"""The platform's own error types: problems the user can fix.

Every module raises a subclass of :class:`PlatformError` (or the class itself) for bad input,
missing files, refused operations and the like. The CLI's top level prints such an error as one
line (``sparse-rcnn CMD: error: MESSAGE``) and exits with status 2; any other exception is a bug
and keeps its traceback. Library and OS errors caused by the user's input (a corrupt file, a
directory where a file is expected) are translated into these types where they arise.

The subclasses keep the built-in base that callers already catch (``except ValueError`` still
catches an :class:`InputError`).
"""

from __future__ import annotations


class PlatformError(Exception):
    """A problem with the user's input or environment, printed as one line, exit status 2."""


class InputError(PlatformError, ValueError):
    """A value, option or file content the platform cannot use; the message names it."""


class MissingFileError(PlatformError, FileNotFoundError):
    """A file or folder the user named does not exist or is of the wrong kind."""


class OutputPathError(PlatformError, OSError):
    """An output location cannot be written: a directory where a file is expected, a missing
    or non-folder parent, no permission."""
