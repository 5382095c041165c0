from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "flows" / "configs"


@pytest.fixture
def configs_dir() -> Path:
    return CONFIGS
