"""Benchmark fixtures.  The benchmark runs only when asked for: ``make bench`` or ``pytest tests/benchmarks``
(or ``MEDVIEW_BENCH=1``); a plain ``pytest`` of the whole suite skips it, since it takes minutes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .dataset import ensure_datasets

HERE = Path(__file__).resolve().parent


def _requested(config: pytest.Config) -> bool:
    if os.environ.get("MEDVIEW_BENCH") == "1":
        return True
    base = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (base / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _requested(config):
        return
    skip = pytest.mark.skip(reason="load benchmark (minutes): run `make bench` or `pytest tests/benchmarks`")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bench_data() -> dict[str, Path]:
    """The benchmark series (built into .bench/ on first use); skips when they cannot be made."""
    found = ensure_datasets()
    if isinstance(found, str):
        pytest.skip(found)
    return found
