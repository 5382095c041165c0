"""Amaranth generators of the NeRF-accelerator engines.

Each engine has its own package, ``hw/<engine>/`` (``params.py``: its parameter type, Verilog header and
size estimate; ``rtl.py``: the Amaranth component); ``hw.common`` holds the RTL pieces they share,
``hw.registry`` lists the engines for export, co-simulation, the CLI and the config loader, and
``hw.params`` keeps the parameter types under their original import path.

Importing the package, ``hw.registry``, ``hw.params`` or an engine's package is cheap: Amaranth is
imported only by ``hw.common``, the ``rtl`` modules and ``hw.export``'s conversion.
"""
