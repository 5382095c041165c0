"""The requant of the renderer: parameters (``params``); the RTL is in ``rtl`` (loaded on first use)."""

from hw.requant.params import RequantParams, verilog_bytes, verilog_header

__all__ = ["RequantParams", "verilog_header", "verilog_bytes"]
