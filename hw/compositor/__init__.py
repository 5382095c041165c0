"""The compositor of the renderer: parameters (``params``); the RTL is in ``rtl`` (loaded on first use)."""

from hw.compositor.params import CompositorParams, verilog_bytes, verilog_header

__all__ = ["CompositorParams", "verilog_header", "verilog_bytes"]
