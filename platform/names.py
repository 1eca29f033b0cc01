"""Names that cannot escape: the one rule for user-given ids that become path or URL parts.

A study id, run name, submission id, experiment name, job or study ``name`` ends up as a folder
under the state dir, a segment of a Ray dashboard URL or an artifact location. Each is checked
here, once, against :data:`NAME_RULE`: a letter or digit first, then letters, digits, ``_``,
``.`` and ``-``, and no ``..`` anywhere. Such a name has no ``/``, no ``\\``, no NUL, cannot be
``.`` or ``..`` and cannot start with ``-`` (which a command line would read as an option).

:func:`path_under` is the second line: it joins a checked name to its root and refuses a result
that resolves (symlinks included) outside that root.
"""

from __future__ import annotations

import re
from pathlib import Path

from sparse_rcnn.platform.errors import InputError, PlatformError

NAME_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME_MAX = 200
"""Longest accepted name: file names stop at 255 bytes and the platform appends suffixes
(``-<date>-<time>``, ``-s0-all-r1``) to some."""

_NAME = re.compile(NAME_RULE)
_RULE_TEXT = (
    "letters, digits, '_', '.' and '-', starting with a letter or digit, without '..', "
    f"at most {NAME_MAX} characters"
)


class InvalidName(InputError):
    """A user-given id or name breaks :data:`NAME_RULE`. Also a ``ValueError``, so a pydantic
    validator that raises it reports the field like any other value error."""


class PathEscape(PlatformError):
    """A path built from a name resolves outside the folder it must stay in."""


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid name, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > NAME_MAX:
        return f"is {len(value)} characters long; use {_RULE_TEXT}"
    if not _NAME.fullmatch(value) or ".." in value:
        return f"is not a valid name; use {_RULE_TEXT}"
    return None


def check_name(field: str, value: object) -> str:
    """``value`` if it follows :data:`NAME_RULE`; else :class:`InvalidName` naming ``field``
    (e.g. ``"study id"``) and the value."""
    problem = name_problem(value)
    if problem is not None:
        raise InvalidName(f"{field} {value!r} {problem}")
    return value  # type: ignore[return-value]  # name_problem checked the type


def path_under(root: Path, name: str, field: str) -> Path:
    """``root / name`` after checking ``name`` with :func:`check_name`; :class:`PathEscape`
    when the joined path, with every symlink resolved, is not inside ``root`` (resolved too).
    The path need not exist."""
    check_name(field, name)
    base = Path(root).resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base) or path == base:
        raise PathEscape(f"{field} {name!r} resolves to {path}, outside {base}; refused")
    return path
