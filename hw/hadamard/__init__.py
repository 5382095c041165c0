"""The DHQ Hadamard-transform datapath: parameters and run-time settings (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``HadamardEngine``, ``FwhtPipeline``, the write-port
signatures, ``signed_vector_layout``, ``config_layout``) are loaded from ``hw.hadamard.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.hadamard.params import HadamardConfig, HadamardParams, verilog_bytes, verilog_header

__all__ = ["HadamardParams", "HadamardConfig", "verilog_header", "verilog_bytes", "HadamardEngine", "FwhtPipeline",
           "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature", "ScaleWriteSignature",
           "signed_vector_layout", "config_layout", "butterfly_stages"]

_RTL = ("HadamardEngine", "FwhtPipeline", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature",
        "ScaleWriteSignature", "signed_vector_layout", "config_layout", "butterfly_stages")

__getattr__ = lazy_rtl(__name__, _RTL)
