"""Transaction-level models (``sim.tlm``) and co-simulation (``sim.cosim``) of the engines."""
