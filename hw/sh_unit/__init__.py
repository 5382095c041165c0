"""The spherical-harmonics unit of the renderer: parameters (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``ShUnit``, the write-port signatures and
the payload layouts) are loaded from ``hw.sh_unit.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.sh_unit.params import ShUnitParams, verilog_bytes, verilog_header

__all__ = ["ShUnitParams", "verilog_header", "verilog_bytes", "ShUnit", "ConfigWriteSignature", "ConstWriteSignature",
           "direction_layout", "coefficients_layout"]

_RTL = ("ShUnit", "ConfigWriteSignature", "ConstWriteSignature", "direction_layout", "coefficients_layout")

__getattr__ = lazy_rtl(__name__, _RTL)
