"""Loading job specs from YAML: one level of ``extends``, ``--set`` overrides, named errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.spec.job import JobSpec

T = TypeVar("T", bound=BaseModel)


class SpecError(PlatformError, ValueError):
    """A spec file or override is invalid; the message (one line) names the file and the field
    path."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping, found {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins; mappings merge recursively, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_extends(path: str | Path) -> dict[str, Any]:
    """The spec's mapping with its ``extends`` parent merged underneath (one level only)."""
    path = Path(path)
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise SpecError(f"{path}: extends must be a file name, got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    base = read_yaml(parent_path)
    if "extends" in base:
        raise SpecError(
            f"{path}: extends {parent_path.name}, which itself extends "
            f"{base['extends']!r}; only one level of extends is allowed"
        )
    return deep_merge(base, data)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings; values are parsed as YAML (``2``, ``true``, ``[8]``)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected key.path=value")
        try:
            parsed[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise SpecError(f"--set {item!r}: value is not valid YAML: {e}") from None
    return set_paths(data, parsed, source="--set")


def set_paths(data: dict[str, Any], values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """A copy of ``data`` with each dotted ``key.path`` set to its value."""
    out = copy.deepcopy(data)
    for key, value in values.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.setdefault(p, {}), dict):
                raise SpecError(f"{source} {key}: {p!r} is not a section".strip())
            node = node[p]
        node[parts[-1]] = copy.deepcopy(value)
    return out


# Type errors whose input the message repeats, so `true`, `2.5` or `.inf` is seen as the cause.
_SHOW_INPUT = ("int_type", "bool_type", "float_type", "finite_number", "int_from_float")


def yaml_scalar(v: Any) -> str:
    """``v`` as YAML writes it (``true``, ``.inf``, ``'two'``), for error messages."""
    if isinstance(v, float) and not math.isfinite(v):
        return ".nan" if math.isnan(v) else (".inf" if v > 0 else "-.inf")
    return yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()


def format_validation_error(e: ValidationError, source: str) -> str:
    """One line: ``SOURCE: invalid spec: field.path: what is wrong[; other.path: ...]``; a check
    across fields reads ``SOURCE: invalid spec: field: what is wrong``."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in _SHOW_INPUT:
            msg = f"{msg}, got {yaml_scalar(err['input'])}"
        # A check across fields (loc empty) names its field at the start of the message.
        parts.append(f"{loc}: {msg}" if err["loc"] else msg)
    return f"{source}: invalid spec: " + "; ".join(parts)


def validate(model: type[T], data: dict[str, Any], source: str) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source)) from None


def load_job_spec(path: str | Path, overrides: list[str] | None = None) -> JobSpec:
    """Read, merge ``extends``, apply ``--set`` overrides and validate a job spec."""
    data = apply_overrides(resolve_extends(path), overrides or [])
    return validate(JobSpec, data, str(path))


def dump_spec(spec: BaseModel) -> str:
    """The fully resolved spec as YAML (what every run logs)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
