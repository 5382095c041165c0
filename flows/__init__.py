"""Command-line flows behind the Makefile, and the YAML hardware presets in ``flows/configs``."""
