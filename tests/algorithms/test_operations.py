"""The operation catalogue: parameters are converted and range-checked with messages a user can act on."""

from __future__ import annotations

import pytest

from medview.algorithms.operations import Operation, Param, parse_assignments
from medview.core.errors import MedviewError


def _echo(image, task=None, **params):
    return params


OP = Operation("demo", "filter", _echo, (
    Param("radius", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm", help="ball radius"),
    Param("iterations", "int", 5, minimum=1, maximum=100),
    Param("mode", "choice", "mean", choices=("mean", "max")),
    Param("inside", "bool", False),
    Param("seeds", "points", None),
    Param("level", "float", None, required=True, help="threshold"),
))


def test_defaults_and_conversion() -> None:
    got = OP(None, level="10", radius="2.5", seeds="1,2,3; -4,5.5,6", inside="yes")
    assert got == {"radius": 2.5, "iterations": 5, "mode": "mean", "inside": True,
                   "seeds": ((1.0, 2.0, 3.0), (-4.0, 5.5, 6.0)), "level": 10.0}


@pytest.mark.parametrize("raw, message", [
    ({"radius": "-1"}, "radius (mm) must be > 0, got -1"),
    ({"radius": "0"}, "radius (mm) must be > 0"),
    ({"iterations": "1.5"}, "iterations must be a whole number"),
    ({"iterations": "101"}, "iterations must be <= 100"),
    ({"mode": "median"}, "mode must be one of mean, max"),
    ({"seeds": "1,2"}, "seeds must be x,y,z;x,y,z in mm"),
    ({"inside": "maybe"}, "inside must be true or false"),
    ({"radius": "nan"}, "radius (mm) must be a number"),
    ({"sigma": "1"}, "demo has no parameter 'sigma'"),
])
def test_bad_values_are_refused_with_a_clear_message(raw, message) -> None:
    with pytest.raises(MedviewError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OP.parse({"level": "1", **raw})


def test_required_parameter_and_assignments() -> None:
    with pytest.raises(MedviewError, match="demo needs the parameter level: threshold"):
        OP.parse({})
    assert parse_assignments(["a=1", " b = x,y "]) == {"a": "1", "b": "x,y"}
    with pytest.raises(MedviewError, match="name=value"):
        parse_assignments(["oops"])
