"""Memory estimates against a running scheduler's workers (`dask scheduler` + `dask worker --memory-limit 2GB` on
loopback): the workers' own limit is what the estimates are checked against, a case over it is named before any
case runs, and a run where no case fits is refused."""

from __future__ import annotations

import pytest

from medview.core.errors import MedviewError
from tests.analysis.test_cohort import LoopbackCluster, square_or_fail


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    cluster = LoopbackCluster(tmp_path_factory.mktemp("dask-memory"), n_workers=1)
    yield cluster
    cluster.close()


def test_estimates_use_the_running_workers_limit(one_worker, tmp_path):
    from medview.analysis.cohort import run_cohort

    needs = {"huge": (3e9, "made up for the test"), "tiny": 1e6}
    summary = run_cohort(["huge", "tiny"], square_or_fail, tmp_path, scheduler=one_worker.address, progress=False,
                         memory=needs.get)
    assert summary["ok"] == 2  # a warning, not a refusal: the estimate may be wrong
    [warning] = summary["warnings"]
    assert "case huge" in warning and "2GB limit" in warning and "--memory-limit" in warning
    assert "made up for the test" in warning

    with pytest.raises(MedviewError, match=r"No case fits in a worker's 2GB memory limit.*--memory-limit"):
        run_cohort(["huge"], square_or_fail, tmp_path / "again", scheduler=one_worker.address, progress=False,
                   memory=needs.get)
    assert not (tmp_path / "again" / "huge.done").exists()
