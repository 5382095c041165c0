from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI machines are slow and shared: no per-example deadline, no slow-generation health check; a fixed
# example budget keeps the fuzz tests to seconds.
settings.register_profile("nerfhw", deadline=None, max_examples=200, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nerfhw")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "flows" / "configs"


@pytest.fixture
def configs_dir() -> Path:
    return CONFIGS


def quick_preset(**overrides):
    """A training preset small enough for tests (built-in scene at 25 x 25): the tiny preset scaled down."""
    import dataclasses

    from nerf.train import PRESETS

    base = dict(name="quick", batch_rays=256, occupancy_res=16, occupancy_warmup=8, occupancy_every=4,
                test_every=4, downscale=4)
    preset = dataclasses.replace(PRESETS["tiny"], **{**base, **overrides})
    return dataclasses.replace(preset, checkpoint_every=preset.iterations)


def train_quick(root: Path, preset) -> Path:
    """Train ``preset`` on the built-in scene where the flows look for it (``root/train-builtin-quick``)."""
    from nerf.train import train

    train("builtin", preset, root / "train-builtin-quick", downscale=4, progress=False)
    return root


def acaq_arch() -> dict:
    """The A-CAQ architecture (16 levels, T = 2^15, N 16..256) as ``InstantNGP.arch``."""
    from nerf.model import InstantNGP

    return InstantNGP(levels=16, log2_table_size=15, n_min=16, n_max=256).arch
