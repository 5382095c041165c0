"""Experiment grids on Ray: cells with dependencies, each one resumable run, each result kept on disk.

A grid is a set of ``Cell``s (a name, a module-level function, the names of the cells whose results it
takes, its keyword arguments and the CPUs it needs). ``run_grid`` submits every unfinished cell as a Ray
task as soon as its dependencies are submitted (Ray passes their results when they are ready) and writes
``<out>/cells/<name>.json`` atomically the moment a cell ends, so a killed grid resumes with its finished
cells kept: a ``done`` record is read back, never re-run. A cell that raises is recorded ``failed`` with
its error and the grid goes on; the cells that need it are recorded ``skipped`` (naming it); both are
tried again on the next run, where their own run folders resume the work they had checkpointed.

Ray: ``ray.init()`` on this machine by default (``num_cpus`` = ``cpus`` or all cores); an existing
cluster when ``RAY_ADDRESS`` is set (Ray's own convention), whose workers must see the same runs folder.
Each task sets PyTorch to its cell's CPUs, so two one-CPU cells on two cores do not fight over threads.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flows.report import write_json

__all__ = ["Cell", "GridError", "run_grid", "load_records"]


class GridError(ValueError):
    """A malformed grid: duplicate or unsafe cell names, unknown or cyclic dependencies."""


@dataclass(frozen=True)
class Cell:
    """One unit of a grid.

    Args:
        name: unique and file-safe (letters, digits, ``-_.``): the record is ``cells/<name>.json``.
        fn: a module-level function (Ray pickles it by reference) called as
            ``fn(*[dependency results in deps order], **kwargs)``; returns a JSON-able value.
        deps: names of the cells whose results ``fn`` takes.
        kwargs: JSON-able keyword arguments.
        cpus: CPUs the task reserves (and PyTorch's threads in it), >= 1.
    """

    name: str
    fn: Callable
    deps: tuple[str, ...] = ()
    kwargs: Mapping = field(default_factory=dict)
    cpus: int = 1


def _check(cells: Sequence[Cell]) -> list[Cell]:
    """The cells in an order where every cell follows its dependencies. Raises GridError."""
    by_name: dict[str, Cell] = {}
    for c in cells:
        if not c.name or any(not (ch.isalnum() or ch in "-_.") for ch in c.name) or c.name.startswith("."):
            raise GridError(f"cell name {c.name!r} must be letters, digits, '-', '_' or '.' (it names a file)")
        if c.name in by_name:
            raise GridError(f"cell name {c.name!r} is used twice")
        if not isinstance(c.cpus, int) or c.cpus < 1:
            raise GridError(f"cell {c.name!r}: cpus must be an integer >= 1, not {c.cpus!r}")
        by_name[c.name] = c
    for c in cells:
        for d in c.deps:
            if d not in by_name:
                raise GridError(f"cell {c.name!r} depends on {d!r}, which is not in the grid")
    order, state = [], {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise GridError(f"cyclic dependencies: {' -> '.join(path + (name,))}")
        state[name] = "active"
        for d in by_name[name].deps:
            visit(d, path + (name,))
        state[name] = "done"
        order.append(by_name[name])

    for c in cells:
        visit(c.name, ())
    return order


def load_records(out: str | Path) -> dict[str, dict]:
    """The records in ``<out>/cells/`` (name -> {"status", "result" or "error", "seconds"})."""
    import json

    folder = Path(out) / "cells"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def _execute(fn: Callable, kwargs: Mapping, name: str, deps: Sequence[str], cpus: int, *dep_records) -> dict:
    """Ray task body: the cell's record. Never raises: an error is the record's."""
    for d, rec in zip(deps, dep_records):
        if rec["status"] != "done":
            return {"status": "skipped", "error": f"dependency {d!r} {rec['status']}: {rec.get('error', '')}",
                    "seconds": 0.0}
    import torch

    torch.set_num_threads(cpus)
    t0 = time.perf_counter()
    try:
        result = fn(*[rec["result"] for rec in dep_records], **kwargs)
    except Exception as exc:  # noqa: BLE001 - the grid records any failure of a cell and goes on
        tb = traceback.format_exc(limit=6)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": tb,
                "seconds": round(time.perf_counter() - t0, 1)}
    return {"status": "done", "result": result, "seconds": round(time.perf_counter() - t0, 1)}


def _ray(cpus: int | None):
    import ray

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray


def run_grid(cells: Sequence[Cell], out: str | Path, *, cpus: int | None = None, progress: bool = True,
             shutdown: bool = True) -> dict[str, dict]:
    """Run every cell of the grid not yet ``done`` in ``out`` as Ray tasks; returns all records by name.

    Args:
        cells: the grid (``Cell``); checked before Ray starts.
        out: the grid's folder; ``cells/<name>.json`` per cell, written as each ends.
        cpus: local Ray's CPUs (None: all cores); ignored on a cluster (``RAY_ADDRESS``).
        shutdown: stop local Ray at the end (tests and flows run one grid per process).

    Raises:
        GridError: a malformed grid (before any work).
    """
    from tqdm import tqdm

    order = _check(cells)
    out = Path(out)
    records = load_records(out)
    todo = [c for c in order if records.get(c.name, {}).get("status") != "done"]
    if not todo:
        return {c.name: records[c.name] for c in order}
    ray = _ray(cpus)
    try:
        task = ray.remote(_execute)
        refs: dict[str, object] = {}
        pending: dict[object, str] = {}
        for c in todo:
            args = [refs[d] if d in refs else records[d] for d in c.deps]
            ref = task.options(num_cpus=c.cpus, max_retries=0, name=c.name).remote(
                c.fn, dict(c.kwargs), c.name, tuple(c.deps), c.cpus, *args)
            refs[c.name] = ref
            pending[ref] = c.name
        bar = tqdm(total=len(todo), desc="grid", unit="cell", disable=not progress)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name = pending.pop(ref)
                rec = ray.get(ref)
                records[name] = rec
                write_json(out / "cells" / f"{name}.json", rec)
                bar.update(1)
                if rec["status"] != "done":
                    tqdm.write(f"grid: cell {name} {rec['status']}: {rec['error']}")
        bar.close()
    finally:
        if shutdown:
            ray.shutdown()
    return {c.name: records[c.name] for c in order}
