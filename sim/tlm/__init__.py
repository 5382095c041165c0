"""Cycle-for-cycle Python models of the engines; they import ``hw.params`` only, never Amaranth."""
