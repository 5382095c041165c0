"""Radiance-field side of the project; ``nerf.grid`` is the torch-free hash-grid geometry."""
