"""flows.grid on Ray: tasks with dependencies, one record per cell, failures recorded, resume keeps finished cells."""

import json
import sys

import pytest

from flows.grid import Cell, GridError, load_records, run_grid


def square(x, *, calls_dir):
    from pathlib import Path

    Path(calls_dir, f"square-{x}").touch()  # proves whether the cell ran again
    return x * x


def add(a, b):
    return a + b


def boom(*_, message):
    raise RuntimeError(message)


@pytest.fixture(autouse=True)
def _by_value():
    import ray.cloudpickle as cp

    cp.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the tests folder
    yield
    cp.unregister_pickle_by_value(sys.modules[__name__])


def test_grid_runs_dependencies_records_failures_and_resumes(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    out = tmp_path / "grid"
    cells = [Cell("a", square, kwargs={"x": 3, "calls_dir": str(calls)}),
             Cell("b", square, kwargs={"x": 4, "calls_dir": str(calls)}),
             Cell("sum", add, deps=("a", "b")),
             Cell("bad", boom, kwargs={"message": "cell exploded"}),
             Cell("after-bad", add, deps=("bad", "a"))]
    rec = run_grid(cells, out, cpus=2, progress=False, shutdown=False)  # one Ray start for both runs
    assert rec["sum"] == {"status": "done", "result": 25, "seconds": rec["sum"]["seconds"]}
    assert rec["bad"]["status"] == "failed" and "RuntimeError: cell exploded" in rec["bad"]["error"]
    assert rec["after-bad"]["status"] == "skipped" and "'bad'" in rec["after-bad"]["error"]
    assert json.loads((out / "cells" / "sum.json").read_text())["result"] == 25
    assert sorted(p.name for p in calls.iterdir()) == ["square-3", "square-4"]
    # a second run keeps the finished cells (no call again) and retries the failed ones
    for p in calls.iterdir():
        p.unlink()
    cells[3] = Cell("bad", add, kwargs={"a": 1, "b": 2})
    rec = run_grid(cells, out, cpus=2, progress=False)
    assert list(calls.iterdir()) == []
    assert rec["bad"]["result"] == 3 and rec["after-bad"] == {**rec["after-bad"], "status": "done", "result": 12}
    assert set(load_records(out)) == {"a", "b", "sum", "bad", "after-bad"}


@pytest.mark.parametrize("cells, message", [
    ([Cell("a", add), Cell("a", add)], "used twice"),
    ([Cell("a/b", add)], "names a file"),
    ([Cell("a", add, deps=("zz",))], "'zz', which is not in the grid"),
    ([Cell("a", add, deps=("b",)), Cell("b", add, deps=("a",))], "cyclic dependencies: a -> b -> a"),
    ([Cell("a", add, cpus=0)], "cpus must be an integer >= 1"),
])
def test_grid_refuses_malformed_grids_before_ray_starts(tmp_path, cells, message):
    with pytest.raises(GridError, match=message):
        run_grid(cells, tmp_path, progress=False)
    assert not (tmp_path / "cells").exists()
