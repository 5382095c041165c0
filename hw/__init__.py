"""Amaranth generators of the NeRF-accelerator engines; ``hw.params`` holds their parameter types.

Importing the package is cheap: Amaranth is imported only by the engine modules themselves.
"""
