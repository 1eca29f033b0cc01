"""The platform's own error type: a problem the user can fix.

Every module raises a subclass of :class:`PlatformError` (or the class itself) for bad input,
missing files, refused operations and the like. The CLI's top level prints such an error as one
line (``sparse-rcnn CMD: error: MESSAGE``) and exits with status 2; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations


class PlatformError(Exception):
    """A problem with the user's input or environment, printed as one line, exit status 2."""
