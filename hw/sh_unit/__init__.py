"""The sh unit of the renderer: parameters (``params``); the RTL is in ``rtl`` (loaded on first use)."""

from hw.sh_unit.params import ShUnitParams, verilog_bytes, verilog_header

__all__ = ["ShUnitParams", "verilog_header", "verilog_bytes"]
