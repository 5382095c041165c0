"""cocotb + Verilator co-simulation: runner wrapper, stream drivers and monitors, scoreboard."""
