"""Cycle-for-cycle Python models of the engines; they import their engines' params only (``hw.<engine>.params``), never Amaranth."""
