"""The bit-serial MLP engine: parameters and run-time layer settings (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``MlpEngine``, the write-port and bank-port
signatures, the payload layouts, ``config_layout``) are loaded from ``hw.mlp_engine.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.mlp_engine.params import MlpEngineParams, MlpLayer, verilog_bytes, verilog_header

__all__ = ["MlpEngineParams", "MlpLayer", "verilog_header", "verilog_bytes", "MlpEngine", "ConfigWriteSignature",
           "WeightWriteSignature", "BiasWriteSignature", "BankSignature", "vector_layout", "input_layout",
           "output_layout", "config_layout"]

_RTL = ("MlpEngine", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature", "BankSignature",
        "vector_layout", "input_layout", "output_layout", "config_layout", "adder_tree", "index_range")

__getattr__ = lazy_rtl(__name__, _RTL)
