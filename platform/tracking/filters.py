"""MLflow search filter strings, built from values that may come from users.

MLflow's filter parser (``mlflow.utils.search_utils``) takes a string value between single or
double quotes and strips the two ends; it knows no escape sequence. So a value is put between
single quotes, or between double quotes when it holds a single quote. A value holding both, or
ending in a backslash (the tokenizer reads backslash-quote as an escaped quote), is refused: no
value can close its quotes and add a clause of its own.
"""

from __future__ import annotations

from sparse_rcnn.platform.errors import InputError


class FilterValueError(InputError):
    """A value cannot be written into an MLflow filter string."""


def quote_value(value: str) -> str:
    """``value`` as an MLflow filter string literal: ``'x'``, or ``"it's"``."""
    if not isinstance(value, str):
        raise FilterValueError(f"MLflow filter value {value!r} is not a string")
    if value.endswith("\\"):
        raise FilterValueError(
            f"MLflow filter value {value!r} ends in a backslash; MLflow cannot search for it"
        )
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise FilterValueError(
        f"MLflow filter value {value!r} holds both kinds of quote; MLflow cannot search for it"
    )


def tag_equals(key: str, value: str) -> str:
    """The clause ``tags.`key` = 'value'``; ``key`` is one of our tag names (no backtick)."""
    if "`" in key:
        raise FilterValueError(f"MLflow tag name {key!r} holds a backtick")
    return f"tags.`{key}` = {quote_value(value)}"


def all_of(*clauses: str) -> str:
    """The clauses joined with ``and`` (MLflow filters have no ``or``)."""
    return " and ".join(clauses)
