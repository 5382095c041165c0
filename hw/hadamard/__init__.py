"""The DHQ Hadamard-transform datapath: parameters and run-time settings (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``HadamardEngine``, ``FwhtPipeline``, the write-port
signatures, ``signed_vector_layout``, ``config_layout``) are loaded from ``hw.hadamard.rtl`` on first use.
"""

from hw.hadamard.params import HadamardConfig, HadamardParams, verilog_bytes, verilog_header

__all__ = ["HadamardParams", "HadamardConfig", "verilog_header", "verilog_bytes", "HadamardEngine", "FwhtPipeline",
           "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature", "signed_vector_layout", "config_layout",
           "butterfly_stages"]

_RTL = ("HadamardEngine", "FwhtPipeline", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature",
        "signed_vector_layout", "config_layout", "butterfly_stages")


def __getattr__(name):
    if name in _RTL:
        from hw.hadamard import rtl

        return getattr(rtl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
