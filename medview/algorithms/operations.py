"""A catalogue of named image operations (filters, segmentation methods) with typed, validated parameters.

Every processing method is first a plain function over core objects (``fn(volume, *, task=None, **params)``).
Registering it here gives the CLI (``medview filter NAME IN OUT --param k=v``), the GUI panels (a form per
operation) and batch pipelines one description of its parameters: name, type, default, range, unit and
help, so that validation and messages are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from medview.core.errors import MedviewError

ParamKind = Literal["float", "int", "bool", "choice", "point", "points"]
OperationKind = Literal["filter", "segment"]


class MissingParameterError(MedviewError):
    """A required parameter was not given: a usage error (the CLI exits with 2, as for a wrong option)."""

    exit_code = 2


@dataclass(frozen=True)
class Param:
    """One parameter of an operation.

    ``point`` is an ``x,y,z`` position in LPS mm; ``points`` is several, separated by ``;``.
    ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum`` is set (e.g. a radius > 0).
    ``required``: no default stands in for it; a form shows it as "not set" until a value is entered, and
    :meth:`Operation.parse` refuses to run without it (:class:`MissingParameterError`).
    """

    name: str
    kind: ParamKind
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    unit: str = ""
    help: str = ""
    required: bool = False

    def parse(self, value: Any) -> Any:
        """Convert ``value`` (a string from the command line, or a Python value) and check its range."""
        label = f"{self.name}{f' ({self.unit})' if self.unit else ''}"
        try:
            if self.kind == "float":
                out: Any = float(value)
            elif self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                out = int(str(value).strip()) if isinstance(value, str) else int(value)
            elif self.kind == "bool":
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    out = lowered in ("1", "true", "yes", "on")
                else:
                    out = bool(value)
            elif self.kind == "choice":
                out = str(value).strip()
                if out not in self.choices:
                    raise MedviewError(f"{label} must be one of {', '.join(self.choices)}, got {value!r}")
            elif self.kind == "point":
                out = _point(value)
            elif self.kind == "points":
                items = [p for p in value.split(";") if p.strip()] if isinstance(value, str) else list(value)
                if not items:
                    raise ValueError
                out = tuple(_point(p) for p in items)
            else:  # pragma: no cover - a programming error in a registration
                raise MedviewError(f"Unknown parameter kind {self.kind!r}")
        except (TypeError, ValueError):
            expected = {"float": "a number", "int": "a whole number", "bool": "true or false",
                        "point": "x,y,z in mm", "points": "x,y,z;x,y,z in mm"}.get(self.kind, "a value")
            raise MedviewError(f"{label} must be {expected}, got {value!r}") from None
        if self.kind in ("float", "int"):
            if out != out:  # NaN
                raise MedviewError(f"{label} must be a number, got {value!r}")
            if self.minimum is not None and (out < self.minimum or (self.exclusive_minimum and out == self.minimum)):
                relation = ">" if self.exclusive_minimum else ">="
                raise MedviewError(f"{label} must be {relation} {self.minimum:g}, got {out:g}")
            if self.maximum is not None and out > self.maximum:
                raise MedviewError(f"{label} must be <= {self.maximum:g}, got {out:g}")
        return out


def _point(value: Any) -> tuple[float, float, float]:
    parts = [float(v) for v in value.split(",")] if isinstance(value, str) else [float(v) for v in value]
    if len(parts) != 3 or any(p != p for p in parts):
        raise ValueError
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Operation:
    """A named method: ``function(image, task=..., **params)`` returns a Volume (filters) or a LabelMap."""

    name: str
    kind: OperationKind
    function: Callable[..., Any]
    params: tuple[Param, ...] = ()
    help: str = ""
    library: str = ""  # the library that does the work (SimpleITK, scikit-image, scipy, scikit-learn)
    aliases: tuple[str, ...] = field(default=())
    # what the result puts in place of the image's values, when it is no longer the same kind of image
    # (Canny's 0/1 edge map, a gradient in units/mm): the GUI says so and asks before running it
    replaces_image: str = ""
    # parameters of which at least one must be given (threshold: a lower or an upper bound, or both)
    at_least_one: tuple[str, ...] = ()

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise MedviewError(f"{self.name} has no parameter {name!r}; parameters: "
                           f"{', '.join(p.name for p in self.params) or 'none'}")

    def parse(self, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, overridden by ``raw`` (strings or values), each converted and range-checked."""
        raw = dict(raw or {})
        unknown = [k for k in raw if k not in {p.name for p in self.params}]
        if unknown:
            raise MedviewError(f"{self.name} has no parameter {unknown[0]!r}; parameters: "
                               f"{', '.join(p.name for p in self.params) or 'none'}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in raw:
                out[p.name] = p.parse(raw[p.name])
            elif p.required:
                raise MissingParameterError(f"{self.name} needs the parameter {p.name}"
                                            f"{f' ({p.unit})' if p.unit else ''}: {p.help}")
            elif p.default is not None:
                out[p.name] = p.parse(p.default)
        if self.at_least_one and all(out.get(name) is None for name in self.at_least_one):
            names = [name.replace("_", " ") for name in self.at_least_one]
            raise MissingParameterError(f"{self.name} needs a value for {' or '.join(names)} (or "
                                        f"{'all' if len(names) > 2 else 'both'}); none is set")
        return out

    def __call__(self, image: Any, task: Any = None, **raw: Any) -> Any:
        return self.function(image, task=task, **self.parse(raw))


_REGISTRY: dict[tuple[str, str], Operation] = {}


def register(operation: Operation) -> Operation:
    """Add ``operation`` to the catalogue (done once, when its module is imported)."""
    for name in (operation.name, *operation.aliases):
        _REGISTRY[(operation.kind, name)] = operation
    return operation


def _load_all() -> None:
    # the modules register their operations when imported
    from medview.algorithms import edges, enhance, filters, segment  # noqa: F401


def operations(kind: OperationKind) -> list[Operation]:
    """Every registered operation of ``kind``, by name (aliases once)."""
    _load_all()
    seen: dict[str, Operation] = {}
    for (k, _), op in sorted(_REGISTRY.items()):
        if k == kind:
            seen.setdefault(op.name, op)
    return [seen[n] for n in sorted(seen)]


def get_operation(kind: OperationKind, name: str) -> Operation:
    """The operation called ``name`` (or an alias), with a message listing the choices otherwise."""
    _load_all()
    op = _REGISTRY.get((kind, name))
    if op is None:
        names: Sequence[str] = [o.name for o in operations(kind)]
        raise MedviewError(f"Unknown {kind} {name!r}; choose one of {', '.join(names)}")
    return op


def parse_assignments(items: Sequence[str] | None) -> dict[str, str]:
    """``['sigma=1.5', 'radius=2']`` (the CLI's ``--param``) -> ``{'sigma': '1.5', 'radius': '2'}``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedviewError(f"Parameters are given as name=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
