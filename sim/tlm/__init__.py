"""Cycle-for-cycle Python models of the engines; each imports its engine's params only
(``hw.<engine>.params``), never Amaranth."""
