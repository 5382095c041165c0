"""The compositor of the renderer: parameters (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``Compositor``, ``ConfigWriteSignature`` and the
payload layouts) are loaded from ``hw.compositor.rtl`` on first use.
"""

from hw.compositor.params import CompositorParams, verilog_bytes, verilog_header
from hw.config import lazy_rtl

__all__ = ["CompositorParams", "verilog_header", "verilog_bytes", "Compositor", "ConfigWriteSignature", "ray_layout",
           "sample_layout", "pixel_layout"]

_RTL = ("Compositor", "ConfigWriteSignature", "ray_layout", "sample_layout", "pixel_layout")

__getattr__ = lazy_rtl(__name__, _RTL)
