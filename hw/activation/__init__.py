"""The activation of the renderer: parameters (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``ActivationUnit``, the write-port signatures)
are loaded from ``hw.activation.rtl`` on first use.
"""

from hw.activation.params import ActivationConfig, ActivationParams, verilog_bytes, verilog_header
from hw.config import lazy_rtl

__all__ = ["ActivationParams", "ActivationConfig", "verilog_header", "verilog_bytes", "ActivationUnit",
           "ConfigWriteSignature", "TableWriteSignature"]

_RTL = ("ActivationUnit", "ConfigWriteSignature", "TableWriteSignature")

__getattr__ = lazy_rtl(__name__, _RTL)
