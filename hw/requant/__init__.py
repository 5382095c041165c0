"""The requant of the renderer: parameters (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``Requantizer``, the write-port signatures) are
loaded from ``hw.requant.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.requant.params import RequantConfig, RequantParams, verilog_bytes, verilog_header

__all__ = ["RequantParams", "RequantConfig", "verilog_header", "verilog_bytes", "Requantizer", "ConfigWriteSignature",
           "ConstWriteSignature"]

_RTL = ("Requantizer", "ConfigWriteSignature", "ConstWriteSignature")

__getattr__ = lazy_rtl(__name__, _RTL)
