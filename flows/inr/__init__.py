"""``make inr``: DHQ vs uniform quantization of a SIREN image INR (weights AND activations).

A SIREN (``nerf.siren``) is fitted to one scikit-image picture at full precision (FP), then every
linear layer's weight and input activation is quantized to B bits, for each B, by four methods:

============ ======= ===================================================================================
method       rotate  how
============ ======= ===================================================================================
uniform      no      min-max PTQ: ``quant.quantizers.calibrate`` on the image's coordinates
lsq+         no      QAT from the FP model: min-max init of the steps (= the uniform PTQ), then
                     ``finetune_steps`` full-batch Adam steps on the weights, biases and the learnable
                     steps (LSQ / LSQ+ straight-through gradients of ``FakeQuantizer``)
dhq          yes     Hadamard rotation (``quant.hadamard.DHQLinear``) + the same min-max PTQ
dhq+lsq+     yes     Hadamard rotation + the same QAT budget
============ ======= ===================================================================================

Crossed settings (``methods``, ``flows.inr.methods``; CLI ``--rotations --calibrations --granularities
--training``): any combination of the rotation placement (``none``, ``all``, ``paper``, ``rule``,
``quant.hadamard``), the step calibration (``min-max``, ``mse``, ``percentile``, ``quant.calibration``),
per-tensor or per-channel weight steps, and PTQ or QAT (the same ``finetune_steps`` for every setting).
Runs with other settings add their cells to the same ``summary.json``; ``crossed`` (``make inr-cross``,
``inr-table``) averages them over images and answers, per B, whether the best DHQ setting beats the
best uniform one.

Ablations, min-max PTQ only: ``uniform-w`` / ``dhq-w`` quantize only the weights, ``uniform-a`` /
``dhq-a`` only the activations (the other side stays FP), to show which side the rotation helps or
hurts. The ``datapath`` section (``flows.inr.datapath``) gives every layer's cycles per vector on the
Hadamard datapath at each B, from its TLM.

All quantizers are symmetric narrow-range per tensor, as the Hadamard datapath runs them. The first
layer's input, the pixel coordinates, is quantized at ``coord_bits`` (default 16) whatever B is: in
hardware it is an exact fixed-point pixel address, and at B bits each axis would take only 2^B - 1
values, off the pixel grid (measured on camera at 256 px: with 8-bit coordinates the 8-bit
activations-only PTQ gives 26.92 dB instead of 31.42), which would measure the coordinates, not the
methods. Min-max suits the U-shaped sine activations (max/std about 1.4); the rotation makes them
Gaussian (max/std 4-5), which costs DHQ's min-max PTQ accuracy (``layer_stats``). The LSQ+
steps start from min-max calibration, not LSQ+'s ``max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(B-1)``:
measured on camera (128 px, 4 and 3 bits) that init starts 1-3 dB lower and ends no better after
fine-tuning, for either method; min-max also makes each QAT start from its PTQ result, so the QAT
columns show exactly what the training adds. Each step has its own Adam learning rate,
``scale_lr`` times its initial value (the steps of different layers differ by orders of magnitude).

Results in ``runs/inr-<image>/``: ``fp.pt`` (the FP model, atomic; reused when the training settings
match, refused with a clear error when they do not), ``summary.json`` (settings, FP metrics, every
(bits, method) cell with PSNR (dB), SSIM, deltas vs FP and wall seconds, per-layer distribution
statistics before and after the rotation; rewritten after every cell, so an interrupted run resumes
and a finished one reuses its cells), ``table.md`` / ``table.csv`` (PSNR per bits and method),
``histograms.png``, ``reconstructions.png`` and ``recon/<method>-<B>b.png``.

``build_summary`` makes the summary dict and ``write_summary`` writes it (and the tables), so that a
caller can add sections (e.g. the datapath's cycles per vector) in between.

Modules, one job each: ``settings`` (ablations, ``InrSettings``, bits, run folder), ``methods`` (the
quantization settings and their names), ``crossed`` (the table over images), ``fit`` (the image and
the FP model), ``cells`` (one quantized model per method and B), ``stats`` (per-layer distributions),
``resume`` (the cells already done), ``summary`` (summary dict and tables), ``plots`` (figures and
PNGs), ``datapath`` (the Hadamard datapath's cycles), ``flow`` (``inr()``, which runs them in order).
"""

from flows.inr.flow import inr
from flows.inr.settings import ABLATIONS, DEFAULT_BITS, MAX_BITS, METHODS, MIN_BITS, InrSettings, parse_bits, run_dir
from flows.inr.stats import layer_statistics
from flows.inr.summary import build_summary, table, write_summary

__all__ = ["METHODS", "ABLATIONS", "DEFAULT_BITS", "MIN_BITS", "MAX_BITS", "InrSettings", "parse_bits", "run_dir", "inr",
           "build_summary", "write_summary", "layer_statistics", "table"]
