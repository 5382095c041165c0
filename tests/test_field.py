"""nerf.field.TrainedField: loading a trained field with its scene's splits."""

import pytest
import torch

from nerf.field import TrainedField


def _checkpoint(path, step: int, iterations: int = 10):
    from nerf.model import InstantNGP
    from nerf.occupancy import OccupancyGrid

    model = InstantNGP(levels=2, log2_table_size=8, n_min=4, n_max=16)
    occ = OccupancyGrid.for_steps(model.bbox, 16, res=8)
    preset = {"iterations": iterations, "n_samples": 16, "downscale": 4, "test_every": 8}
    torch.save({"arch": model.arch, "model": model.state_dict(), "occupancy": occ.state_dict(), "preset": preset,
                "scene": "builtin", "step": step}, path)
    return model


def test_missing_and_unfinished_checkpoints_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no trained checkpoint .*nope.pt: run `make train X` first"):
        TrainedField(tmp_path / "nope.pt", command="make train X")
    _checkpoint(tmp_path / "c.pt", step=3)
    with pytest.raises(FileNotFoundError, match=r"c.pt stopped at iteration 3 of 10: finish it with `make train X`"):
        TrainedField(tmp_path / "c.pt", command="make train X")
    with pytest.raises(FileNotFoundError, match="finish its training"):
        TrainedField(tmp_path / "c.pt")


def test_a_finished_checkpoint_loads_with_its_scene(tmp_path):
    model = _checkpoint(tmp_path / "c.pt", step=10)
    field = TrainedField(tmp_path / "c.pt")
    assert field.scene == "builtin" and field.levels == 2 and field.n_samples == 16
    assert field.model.arch == model.arch
    loaded = field.model.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded[name], tensor)
    assert len(field.train_data.images) > 0 and len(field.test_data.images) > 0
    assert field.split("val").height == field.test_data.height
