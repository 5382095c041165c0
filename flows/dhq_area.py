"""``make dhq-area``: the DHQ Hadamard datapath against a full-precision baseline of the same layer, synthesised.

For each Hadamard preset (``flows/configs/had-*.yaml``: one linear layer of n inputs and m outputs on an R x C
activation-bit-serial array, ``hw.hadamard``) the baseline is the same layer on the same R x C array, bit-parallel
in 16- and 32-bit fixed point (``hw.fixed_mv``, ``baseline_params``). Every design is synthesised for Xilinx
7-series with Yosys (``hw.area.engine_area(params, family="xc7")``, cached in ``build/area``) and timed by its
TLM's closed forms (``sim.tlm.hadamard.vector_cycles`` at act_bits a = the preset's maximum and 8 and 4 where
they fit; ``sim.tlm.fixed_mv.vector_cycles``). The table sets the Hadamard datapath's relative change against
each baseline beside the paper's claims (Zhou et al. 2025, "Distribution-Aware Hadamard Quantization for
Hardware-Efficient Implicit Neural Representations", arXiv 2508.13478: W8A8 DHQ on an FPGA against full
precision: latency -32.7 %, energy -40.1 %, FPGA resources up to -98.3 %).

THE ENERGY PROXY (``energy_proxy``): energy per vector ~ (CMOS transistors of the logic + 6 x memory bits) x
cycles per vector, in transistor-cycles. The transistors are Yosys's ``stat -tech cmos`` estimate of the
generic (technology-independent) netlist (``hw.area``: NOT 2, NAND/NOR 4, AND/OR 6, XOR/MUX 12, DFF 16
transistors), memories priced as 6-transistor SRAM cells per bit. It assumes every transistor switches alike
in every cycle the engine works on a vector (equal activity and capacitance per transistor, no clock gating),
so energy scales with the hardware that is busy times the time it is busy. Why not the FPGA resources: they
are incommensurable (a DSP48E1, a LUT and a flip-flop have no published common energy unit that this
project could source), and DSP48s hide the baseline's wide multipliers, which are most of its cost, behind a
count; the generic netlist prices every multiplier and adder as the gates it is, the same way in both
designs. The FPGA fabric is kept as a second, cruder column, ``fabric_cycles`` = (LUT + FF) x cycles per vector
(DSP and block RAM left out, listed apart, rather than weighted by an unsourced factor). Neither is a
measurement of power: no activity, wires or voltage are modelled.

Latency here is the time per vector at full rate, cycles per vector (the initiation interval) / clock
(``ns_per_vector``); a lone vector's latency (``latency_ns``, input to output, idle engine) is listed too.
Resources do not depend on the run-time act_bits, so the Hadamard rows of one preset share them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flows.report import Column, markdown_table, write_json
from hw.config import check_int

__all__ = ["dhq_area", "dhq_tables", "baseline_params", "hadamard_presets", "PAPER", "BASELINE_BITS",
           "SRAM_TRANSISTORS_PER_BIT", "ENERGY_PROXY"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: The paper's claims for W8A8 DHQ on an FPGA against full precision (relative change, %).
PAPER = {"resources": -98.3, "latency": -32.7, "energy": -40.1,
         "source": "Zhou et al. 2025, arXiv 2508.13478 (DHQ), W8A8 on FPGA vs full precision; resources: 'up to'"}
#: Fixed-point widths of the full-precision baselines.
BASELINE_BITS = (16, 32)
#: Transistors per memory bit in the energy proxy (a 6T SRAM cell).
SRAM_TRANSISTORS_PER_BIT = 6
#: The energy proxy in one line (the module docstring explains it).
ENERGY_PROXY = ("energy per vector ~ (Yosys CMOS transistors of the logic + 6 x memory bits) x cycles per vector "
                "[transistor-cycles], equal switching per transistor per busy cycle")


def hadamard_presets() -> list[str]:
    """Names of the presets in flows/configs with a ``hadamard`` section."""
    from hw.registry import load_config

    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if "hadamard" in load_config(p))


def _hadamard(name: str):
    from hw.registry import load_config

    allowed = hadamard_presets()
    if name not in allowed:
        raise ValueError(f"unknown Hadamard preset {name!r} (allowed: {', '.join(allowed)})")
    return load_config(CONFIG_DIR / f"{name}.yaml")["hadamard"]


def baseline_params(had, bits: int):
    """The full-precision baseline of a Hadamard preset's layer: ``FixedMvParams`` with its n, out_size, rows,
    cols and clock, ``bits``-bit inputs, weights and outputs."""
    from hw.fixed_mv.params import FixedMvParams

    return FixedMvParams(n=had.n, out_size=had.out_size, data_bits=bits, out_bits=bits, rows=had.rows,
                         cols=had.cols, clock_mhz=had.clock_mhz)


def _act_bits(had) -> list[int]:
    """The preset's maximum act_bits, then 8 and 4 where they are at most that."""
    return [a for a in dict.fromkeys((had.max_act_bits, 8, 4)) if a <= had.max_act_bits]


def _resources(area: dict) -> dict:
    fpga, generic = area["fpga"], area["generic"]
    transistors = generic["transistors"]
    memory_bits = generic["memory_bits"]
    return {"lut": fpga["lut"], "ff": fpga["ff"], "dsp": fpga["dsp"], "bram18": fpga["bram18"],
            "transistors": transistors, "memory_bits": memory_bits,
            "proxy_transistors": None if transistors is None else transistors + SRAM_TRANSISTORS_PER_BIT * memory_bits}


def _design(preset: str, design: str, bits: str, params, area: dict, cycles: int, latency: int) -> dict:
    r = _resources(area)
    ns = 1e3 / params.clock_mhz
    return {"preset": preset, "design": design, "bits": bits, **r, "clock_mhz": params.clock_mhz,
            "cycles_per_vector": cycles, "ns_per_vector": cycles * ns, "latency_cycles": latency,
            "latency_ns": latency * ns,
            "energy_proxy": None if r["proxy_transistors"] is None else r["proxy_transistors"] * cycles,
            "fabric_cycles": (r["lut"] + r["ff"]) * cycles, "params": params.to_dict()}


def _change(new, old) -> float | None:
    """Relative change of ``new`` against ``old`` in %; None when undefined (old 0 or a value missing)."""
    if new is None or old is None or old == 0:
        return None
    return 100.0 * (new - old) / old


def dhq_tables(areas: dict[str, dict], presets: Sequence[str], bits: Sequence[int] = BASELINE_BITS) -> dict:
    """The pure arithmetic of ``dhq_area``: designs and relative changes from synthesis results.

    Args:
        areas: ``{key: engine_area result}`` with keys ``"<preset>"`` (the Hadamard datapath) and
            ``"<preset>/fp<bits>"`` (its baseline), as ``dhq_area`` collects them.
        presets: Hadamard preset names, in table order. bits: baseline widths.

    Returns:
        ``{"designs": [...], "comparisons": [...]}``: a design row per Hadamard act_bits and per baseline
        (resources, cycles per vector, ns per vector, latency, energy proxy, fabric cycles); a comparison row per
        (preset, act_bits, baseline): the Hadamard datapath's change in % of LUT, FF, DSP, ns per vector, energy
        proxy and fabric cycles (None where the baseline's value is 0 or unknown).
    """
    from sim.tlm import fixed_mv as fmv
    from sim.tlm import hadamard as had_tlm

    designs, comparisons = [], []
    for name in presets:
        had = _hadamard(name)
        had_rows = [_design(name, "hadamard", f"a{a}", had, areas[name], had_tlm.vector_cycles(had, a),
                            had_tlm.vector_latency(had, a)) for a in _act_bits(had)]
        base_rows = []
        for b in bits:
            base = baseline_params(had, b)
            base_rows.append(_design(name, "fixed_mv", f"fp{b}", base, areas[f"{name}/fp{b}"],
                                     fmv.vector_cycles(base), fmv.vector_latency(base)))
        designs += had_rows + base_rows
        for h in had_rows:
            for fp in base_rows:
                comparisons.append({
                    "preset": name, "hadamard": h["bits"], "baseline": fp["bits"],
                    **{f"d_{k}": _change(h[k], fp[k]) for k in ("lut", "ff", "dsp", "ns_per_vector", "energy_proxy",
                                                                 "fabric_cycles")},
                })
    return {"designs": designs, "comparisons": comparisons}


def _pct(v: float) -> str:
    return f"{v:+.1f} %"


def _int(v) -> str:
    return f"{v:,}"


def _mega(v) -> str:
    return f"{v / 1e6:,.2f}"


DESIGN_COLUMNS = [
    Column("preset", "preset", "preset"),
    Column("design", "design", "design"),
    Column("bits", "bits", "bits (a: act bits; fp: fixed point)"),
    Column("lut", "lut", "LUT", _int),
    Column("ff", "ff", "FF", _int),
    Column("dsp", "dsp", "DSP48E1", _int),
    Column("bram18", "bram18", "BRAM18"),
    Column("transistors", "transistors", "logic transistors (CMOS est.)", _int),
    Column("memory_bits", "memory_bits", "memory bits", _int),
    Column("cycles_per_vector", "cycles_per_vector", "cycles / vector (II)", _int),
    Column("ns_per_vector", "ns_per_vector", "ns / vector", lambda v: f"{v:,.0f}"),
    Column("latency_ns", "latency_ns", "latency ns (one vector)", lambda v: f"{v:,.0f}"),
    Column("energy_proxy", "energy_proxy", "energy proxy (M transistor-cycles / vector)", _mega),
    Column("fabric_cycles", "fabric_cycles", "(LUT+FF) x cycles (M)", _mega),
]

COMPARISON_COLUMNS = [
    Column("preset", "preset", "preset"),
    Column("hadamard", "hadamard", "DHQ"),
    Column("baseline", "baseline", "vs"),
    Column("d_lut", "d_lut", "LUT", _pct),
    Column("d_ff", "d_ff", "FF", _pct),
    Column("d_dsp", "d_dsp", "DSP", _pct),
    Column("d_ns_per_vector", "d_ns_per_vector", "latency (ns / vector)", _pct),
    Column("d_energy_proxy", "d_energy_proxy", "energy proxy", _pct),
    Column("d_fabric_cycles", "d_fabric_cycles", "(LUT+FF) x cycles", _pct),
]


def _markdown(tables: dict, family: str) -> str:
    paper = {"preset": "paper (Zhou et al. 2025)", "hadamard": "W8A8", "baseline": "FP",
             "d_lut": PAPER["resources"], "d_dsp": PAPER["resources"], "d_ns_per_vector": PAPER["latency"],
             "d_energy_proxy": PAPER["energy"]}
    return "\n".join([
        f"# DHQ Hadamard datapath vs a full-precision fixed-point baseline of the same layer ({family})",
        "",
        "Resources: Yosys `synth_xilinx -family xc7` (hw.area.engine_area); cycles: the TLMs' closed forms; "
        "time at each preset's clock.",
        f"Energy proxy: {ENERGY_PROXY}.",
        "",
        markdown_table(tables["designs"], DESIGN_COLUMNS),
        "Relative change of the Hadamard datapath against each baseline (negative: DHQ smaller / faster). "
        "The paper's row: its claims for W8A8 DHQ on an FPGA against full precision (resources 'up to' -98.3 %, "
        "given here under LUT and DSP; its energy is measured, ours the proxy above).",
        "",
        markdown_table([*tables["comparisons"], paper], COMPARISON_COLUMNS),
    ])


def dhq_area(presets: Sequence[str] | None = None, *, bits: Sequence[int] = BASELINE_BITS, family: str = "xc7",
             cache_dir: str | Path = "build/area", runs_root: str | Path = "runs", progress: bool = True,
             timeout_s: float | None = None) -> dict:
    """Synthesise every Hadamard preset and its 16- and 32-bit baselines; write ``<runs_root>/dhq-area/``
    ``summary.json`` and ``table.md`` (and ``designs.csv``, ``comparisons.csv``).

    Args:
        presets: Hadamard preset names (default every ``had-*`` preset in flows/configs).
        bits: baseline fixed-point widths, each in [8, 32] (default 16 and 32).
        family: FPGA family of ``hw.area.engine_area`` (``"xc7"``: DSP48E1 and RAMB18E1 counts).
        cache_dir: synthesis cache (``hw.area``): a design synthesised before is not run again.
        progress: print each synthesis, its time and its result on stderr (a large one takes minutes).
        timeout_s: limit per Yosys run (seconds), None: none.

    Returns:
        The summary: ``paper``, ``energy_proxy``, ``family``, ``designs``, ``comparisons`` (``dhq_tables``),
        ``seconds``, and the output paths.

    Raises:
        ValueError: an unknown preset (naming the allowed ones) or a width out of range, before any synthesis.
        hw.area.AreaError: Yosys failed.
    """
    from flows.report import write_csv
    from hw.area import engine_area

    presets = list(hadamard_presets() if presets is None else presets)
    if not presets:
        raise ValueError("presets must name at least one Hadamard preset")
    hads = {name: _hadamard(name) for name in presets}  # every check before the (slow) synthesis
    bits = [check_int("bits", b, 8, 32) for b in bits]
    jobs = [(name, had) for name, had in hads.items()] + \
        [(f"{name}/fp{b}", baseline_params(had, b)) for name, had in hads.items() for b in bits]
    start = time.monotonic()
    areas = {}
    for k, (key, params) in enumerate(jobs, 1):
        if progress:
            print(f"dhq-area: [{k}/{len(jobs)}] {key} ({params.SECTION}): synthesising (cached results are "
                  f"reused; a large one takes minutes)", file=sys.stderr, flush=True)
        areas[key] = engine_area(params, family=family, cache_dir=cache_dir, progress=progress, timeout_s=timeout_s)
    tables = dhq_tables(areas, presets, bits)
    out = Path(runs_root) / "dhq-area"
    summary = {"paper": PAPER, "energy_proxy": ENERGY_PROXY, "family": family, "presets": presets, "bits": bits,
               **tables, "seconds": round(time.monotonic() - start, 1),
               "table": str(out / "table.md"), "summary": str(out / "summary.json")}
    from common.atomic import atomic_write_text

    atomic_write_text(out / "table.md", _markdown(tables, family))
    write_csv(out / "designs.csv", tables["designs"], DESIGN_COLUMNS)
    write_csv(out / "comparisons.csv", tables["comparisons"], COMPARISON_COLUMNS)
    write_json(out / "summary.json", summary)
    return summary

