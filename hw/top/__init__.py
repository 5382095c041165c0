"""The accelerator top: the parameters of every unit it connects (``params``), the RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``AcceleratorTop``, ``ray_layout``,
``top_verilog``, ``write_top_verilog``) are loaded from ``hw.top.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.top.params import TopParams

__all__ = ["TopParams", "AcceleratorTop", "ray_layout", "top_verilog", "write_top_verilog"]

_RTL = ("AcceleratorTop", "ray_layout", "top_verilog", "write_top_verilog")

__getattr__ = lazy_rtl(__name__, _RTL)
