"""The accelerator top: the parameters of every unit it connects (``params``)."""

from hw.top.params import TopParams

__all__ = ["TopParams"]
