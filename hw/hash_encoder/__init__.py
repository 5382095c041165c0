"""The multiresolution hash-encoding engine: parameters (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``HashEncoder``, ``TableWriteSignature``,
``point_layout``, ``features_layout``) are loaded from ``hw.hash_encoder.rtl`` on first use.
"""

from hw.config import lazy_rtl
from hw.hash_encoder.params import HashEncoderParams, verilog_bytes, verilog_header

__all__ = ["HashEncoderParams", "verilog_header", "verilog_bytes", "HashEncoder", "TableWriteSignature",
           "point_layout", "features_layout"]

_RTL = ("HashEncoder", "TableWriteSignature", "point_layout", "features_layout")

__getattr__ = lazy_rtl(__name__, _RTL)
