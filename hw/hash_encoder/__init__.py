"""The multiresolution hash-encoding engine: parameters (``params``), RTL (``rtl``).

Importing the package is cheap (no Amaranth): the RTL names (``HashEncoder``, ``TableWriteSignature``,
``point_layout``, ``features_layout``) are loaded from ``hw.hash_encoder.rtl`` on first use.
"""

from hw.hash_encoder.params import HashEncoderParams, verilog_bytes, verilog_header

__all__ = ["HashEncoderParams", "verilog_header", "verilog_bytes", "HashEncoder", "TableWriteSignature",
           "point_layout", "features_layout"]

_RTL = ("HashEncoder", "TableWriteSignature", "point_layout", "features_layout")


def __getattr__(name):
    if name in _RTL:
        from hw.hash_encoder import rtl

        return getattr(rtl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
