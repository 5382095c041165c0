"""The activation of the renderer: parameters (``params``); the RTL is in ``rtl`` (loaded on first use)."""

from hw.activation.params import ActivationParams, verilog_bytes, verilog_header

__all__ = ["ActivationParams", "verilog_header", "verilog_bytes"]
