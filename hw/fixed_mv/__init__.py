"""The full-precision fixed-point matrix-vector engine (the DHQ datapath's baseline): parameters and run-time
setting (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``FixedMatVec``, the write-port signatures) are
loaded from ``hw.fixed_mv.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.fixed_mv.params import FixedMvConfig, FixedMvParams, verilog_bytes, verilog_header

__all__ = ["FixedMvParams", "FixedMvConfig", "verilog_header", "verilog_bytes", "FixedMatVec",
           "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature"]

_RTL = ("FixedMatVec", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature")

__getattr__ = lazy_rtl(__name__, _RTL)
