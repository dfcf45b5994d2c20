"""YAML loading with errors that name the file, the field and what is allowed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kraft.spec.models import FleetSpec, TenantsSpec

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A spec that cannot be used. The message is meant for the person who wrote it."""


def bundled_dir(kind: str) -> Path:
    return Path(str(resources.files("kraft") / "data" / kind))


def bundled_names(kind: str) -> list[str]:
    return sorted(p.stem for p in bundled_dir(kind).glob("*.yaml"))


def resolve_path(name_or_path: str, kind: str) -> Path:
    """A bundled name (`philly`) or a path to a YAML file."""
    bundled = bundled_dir(kind) / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    path = Path(name_or_path)
    if path.exists():
        return path
    raise SpecError(f"{name_or_path}: no such file, and not a bundled {kind[:-1]} "
                    f"(bundled: {', '.join(bundled_names(kind))})")


def format_validation_error(path: Path | str, err: ValidationError) -> str:
    lines = [f"{path}: invalid spec ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_yaml(path: Path, model: type[M]) -> M:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got "
                        f"{type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_validation_error(path, e)) from None


def load_fleet(name_or_path: str) -> FleetSpec:
    return load_yaml(resolve_path(name_or_path, "fleets"), FleetSpec)


def load_tenants(name_or_path: str) -> TenantsSpec:
    return load_yaml(resolve_path(name_or_path, "tenants"), TenantsSpec)
