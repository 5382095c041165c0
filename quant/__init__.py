"""Quantization of the radiance field for the hardware.

``quant.policy`` (torch-free): the ordered component list, each component's scheme, ``QuantPolicy``
(component -> bits, YAML) and FQR. ``quant.quantizers`` (torch): fake quantizers with straight-through
gradients in A-CAQ's three schemes, min-max calibration and integer export.

Importing the package is cheap: torch is imported only by ``quant.quantizers``.
"""
