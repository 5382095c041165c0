"""The hash encoder with its tables in external memory: AXI4 line reads, a per-level partitioned
set-associative table cache (``params``: parameters and the table layout; ``rtl``: the component).

Importing the package is cheap (no Amaranth): ``HashEncoderAxi`` and ``AxiReadSignature`` are loaded
from ``hw.hash_encoder_axi.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.hash_encoder_axi.params import HashEncoderAxiParams, TableLayout, verilog_bytes, verilog_header

__all__ = ["HashEncoderAxiParams", "TableLayout", "verilog_header", "verilog_bytes", "HashEncoderAxi",
           "AxiReadSignature"]

__getattr__ = lazy_rtl(__name__, ("HashEncoderAxi", "AxiReadSignature"))
