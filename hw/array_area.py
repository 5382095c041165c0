"""The MLP engine's area at its full array size, extrapolated from the synthesis of small arrays (``hw.area``)."""

from __future__ import annotations

import os

from hw.area import engine_area

__all__ = ["array_area", "ARRAY_CORNERS"]


#: Array sizes (rows, cols) whose synthesis ``array_area`` extrapolates from.
ARRAY_CORNERS = ((4, 4), (8, 4), (4, 8), (8, 8))


def array_area(params, *, family: str = "xc7", cache_dir: str | os.PathLike = "build/area",
               progress: bool = False, corners=ARRAY_CORNERS) -> dict:
    """The MLP engine's synthesis statistics at its R x C array, extrapolated from small arrays.

    A 64 x 32 array takes Yosys tens of minutes on 2 cores (module docstring), too long to synthesise
    every policy of a comparison. The engine is a regular array: its cost is a fixed part, a part per
    row and per column (buffers, adder trees) and a part per processing element, so each figure f is
    fitted exactly as ``f(R, C) = a + b R + c C + d R C`` through ``engine_area`` at the four
    ``corners`` (the same widths, ``max_in``, ``max_out`` and layers as ``params``) and evaluated at
    (``params.rows``, ``params.cols``). DSP counts are extrapolated the same way; block RAM is not (a
    count of whole blocks that the small arrays' buffers round up: 5, 5, 5, 6 at the corners of one
    width pair extrapolates to 110), so ``bram18`` is None. Measured against a direct synthesis of a 16 x 8 array (64-64 layers, 8-bit weights and
    activations, corners 4..8): generic cells 63,179 predicted vs 63,110 (+0.1 %), FF 2,184 vs 2,188,
    DSP 16 vs 16, LUT 8,759 vs 9,259 (-5.4 %: LUT packing is not linear in the array). The cells of
    the corners grow almost only with R (C 4 -> 8 adds < 1 %), so the R x C coefficient is small and
    noisy; its error grows with the extrapolation: against a direct synthesis of the full 64 x 32 array at
    8 bits (358 s), cells 259,055 predicted vs 239,557 (+8.1 %), LUT 30,245 vs 34,679 (-12.8 %). Cells are
    the figure to use; LUT is an estimate.

    Returns:
        ``{"engine": "mlp_engine", "params", "family", "method": "bilinear", "corners": [[R, C], ...],
        "fpga": {"lut", "ff", "dsp", "bram18": None}, "generic": {"cells"}}`` (integers).

    Raises:
        ValueError: ``params`` is not an MLP engine's, or a bad option; AreaError: as ``engine_area``.
    """
    import dataclasses as dc

    import numpy as np

    from hw.params import MlpEngineParams

    if not isinstance(params, MlpEngineParams):
        raise ValueError(f"params must be MLP engine parameters (MlpEngineParams), not {type(params).__name__}")
    rows = []
    for r, c in corners:
        rows.append(engine_area(dc.replace(params, rows=r, cols=c), family=family, cache_dir=cache_dir,
                                progress=progress))
    basis = np.array([[1.0, r, c, r * c] for r, c in corners])
    at = np.array([1.0, params.rows, params.cols, params.rows * params.cols])

    def fit(values) -> int:
        coef = np.linalg.lstsq(basis, np.asarray(values, dtype=float), rcond=None)[0]
        return int(round(float(at @ coef)))

    fpga = {k: fit([x["fpga"][k] for x in rows]) for k in ("lut", "ff", "dsp")}
    fpga["bram18"] = None
    return {"engine": "mlp_engine", "params": params.to_dict(), "family": family, "method": "bilinear",
            "corners": [list(rc) for rc in corners], "fpga": fpga,
            "generic": {"cells": fit([x["generic"]["cells"] for x in rows])}}
