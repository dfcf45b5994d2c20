"""YAML loading with errors that name the file, the field and what is allowed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from kraft.spec.models import FleetSpec, TenantsSpec

M = TypeVar("M", bound=BaseModel)
MAX_SPEC_BYTES = 4 << 20


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


def _model_in(annotation) -> type[BaseModel] | None:
    """The model inside an annotation such as `list[PodSpec]` or `ExecutorSpec | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def allowed_fields(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The field names allowed beside the last part of a pydantic error location (an
    unknown field: what its writer may have meant); None where the path cannot be followed."""
    current = model
    for part in loc[:-1]:
        if isinstance(part, int):  # an index into a list
            continue
        by_name = {f.alias or n: f for n, f in current.model_fields.items()}
        if part not in by_name or (current := _model_in(by_name[part].annotation)) is None:
            return None
    return [f.alias or n for n, f in current.model_fields.items()]


def explain(error: dict, model: type[BaseModel] | None) -> str:
    """One validation error's message, with the allowed fields for an unknown one."""
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and model is not None:
        allowed = allowed_fields(model, tuple(error["loc"]))
        if allowed:
            msg = f"unknown field; allowed: {', '.join(allowed)}"
    return msg


def format_validation_error(path: Path | str, err: ValidationError,
                            model: type[BaseModel] | None = None) -> str:
    lines = [f"{path}: invalid spec ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        got = e.get("input")
        shown = ("" if isinstance(got, (dict, list)) or got is None
                 or e["type"] == "extra_forbidden" else f" (got {got!r})")
        lines.append(f"  {loc}: {explain(e, model)}{shown}")
    return "\n".join(lines)


def read_mapping(path: Path) -> dict:
    """A YAML file's top-level mapping, unvalidated (the API validates what the CLI sends)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: over {MAX_SPEC_BYTES >> 20} MiB; a spec is a few kB "
                        f"(traces go through `kraft trace`)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start}: "
                        f"{data[e.start:e.start + 1]!r})") from None
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got "
                        f"{type(raw).__name__}")
    return raw


def load_yaml(path: Path, model: type[M]) -> M:
    raw = read_mapping(path)
    try:
        return model.model_validate(raw)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply") from None
    except ValidationError as e:
        raise SpecError(format_validation_error(path, e, model)) from None


def load_fleet(name_or_path: str) -> FleetSpec:
    return load_yaml(resolve_path(name_or_path, "fleets"), FleetSpec)


def load_tenants(name_or_path: str) -> TenantsSpec:
    return load_yaml(resolve_path(name_or_path, "tenants"), TenantsSpec)
