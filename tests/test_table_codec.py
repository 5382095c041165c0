"""quant.table_codec: entropy-coded hash tables in one bitstream; the decoded field renders bit-identically."""

import numpy as np
import pytest
import torch

from nerf.data import load_scene
from nerf.render import render_image
from nerf.train import model_from_checkpoint
from quant.entropy import BitstreamError, write_bitstream
from quant.policy import QuantPolicy
from quant.ptq import apply_policy, ptq
from quant.table_codec import decode_ngp, encode_ngp, level_rows
from tests.conftest import quick_preset, train_quick

# 4 levels, T = 2^13: level 0 (N = 16) is dense with 17^3 = 4913 used rows, levels 1..3 hashed
QUICK = quick_preset(iterations=40, n_samples=24, log2_table_size=13, n_max=64, levels=4, batch_samples=2048)
N_SAMPLES = 24
UNIFORM8 = QuantPolicy.uniform(8, 4)
MIXED = UNIFORM8.replace({"hash.level01": 4, "hash.level02": 32, "hash.level03": 4, "color.out": 32})


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors on a shared machine
    root = train_quick(tmp_path_factory.mktemp("runs"), QUICK)
    model, occupancy, _ = model_from_checkpoint(root / "train-builtin-quick" / "checkpoint.pt")
    yield model, occupancy, load_scene("builtin", "train", downscale=4), load_scene("builtin", "test", downscale=4)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("policy, entropy_model", [(UNIFORM8, "prior"), (MIXED, "prior"), (MIXED, "empirical")],
                         ids=["uniform8", "mixed", "mixed-empirical"])
def test_decoded_field_renders_bit_identically_with_fewer_bits(field, tmp_path, policy, entropy_model):
    model, occupancy, train, test = field
    ptq(model, occupancy, train, policy, n_samples=N_SAMPLES, rays=1024)
    path = tmp_path / "scene.nhwb"
    summary = encode_ngp(model, occupancy, policy, path, entropy_model=entropy_model, fit_steps=300)
    decoded, grid = decode_ngp(path)
    want, _ = render_image(model, occupancy, test, 0, n_samples=N_SAMPLES)
    got, _ = render_image(decoded, grid, test, 0, n_samples=N_SAMPLES)
    assert np.array_equal(got, want)
    assert torch.equal(grid.occupied, occupancy.occupied) and 0 < occupancy.fraction < 1
    # every used table row decodes to the fake-quantized value the encoder's model interpolates
    rows = level_rows(model.arch)
    assert rows[0] == 17 ** 3 and rows[1:] == [1 << 13] * 3
    with torch.no_grad():
        for level, n in enumerate(rows):
            name = f"hash.level{level:02d}"
            key = name.replace(".", "__")
            orig = model.encoding.table[level, :n]
            if key in model.quant:
                orig = model.quant[key](orig)
            assert torch.equal(decoded.encoding.table[level, :n], orig), name
    # sizes: the file, and the coded hash tables below the policy's bits (the entropy-coding gain)
    assert summary["file_bytes"] == path.stat().st_size
    assert summary["table_parameters"] == sum(2 * n for n in rows)
    for level in summary["levels"]:
        assert level["raw_bits"] == level["parameters"] * policy[level["name"]]
        if level["bits"] < 32:
            assert level["coded_bits"] == level["stream_bits"] + level["table_bits"]
            assert level["bits_per_parameter"] < level["bits"], level
    assert summary["bits_per_parameter"] < summary["policy_bits_per_parameter"]
    assert summary["policy_bits_per_parameter"] == pytest.approx(
        sum(policy[f"hash.level{i:02d}"] * 2 * n for i, n in enumerate(rows)) / summary["table_parameters"])


def test_damaged_files_and_other_kinds_raise_bitstream_errors(field, tmp_path):
    model, occupancy, train, _ = field
    ptq(model, occupancy, train, UNIFORM8, n_samples=N_SAMPLES, rays=1024)
    path = tmp_path / "scene.nhwb"
    size = encode_ngp(model, occupancy, UNIFORM8, path, fit_steps=20)["file_bytes"]
    cut = tmp_path / "cut.nhwb"
    cut.write_bytes(path.read_bytes()[:size // 2])
    with pytest.raises(BitstreamError, match=f"truncated: {size // 2} bytes, header says {size}"):
        decode_ngp(cut)
    other = tmp_path / "tensorf.nhwb"
    write_bitstream(other, "tensorf-ectensorf", {}, {"planes": b"\0" * 8})
    with pytest.raises(BitstreamError, match="kind 'ngp-tables' expected, file holds 'tensorf-ectensorf'"):
        decode_ngp(other)
    fake = tmp_path / "fake.nhwb"
    write_bitstream(fake, "ngp-tables", {"arch": model.arch}, {})
    with pytest.raises(BitstreamError, match="header lacks 'policy'|invalid architecture or policy"):
        decode_ngp(fake)


def test_encoding_needs_calibrated_quantizers_matching_the_policy(field, tmp_path):
    model, occupancy, train, _ = field
    ptq(model, occupancy, train, UNIFORM8, n_samples=N_SAMPLES, rays=1024)
    with pytest.raises(ValueError, match="component hash.level01: the quantizer has bits=8 .* the policy says 4"):
        encode_ngp(model, occupancy, UNIFORM8.replace({"hash.level01": 4}), tmp_path / "x.nhwb")
    with pytest.raises(ValueError, match="component hash.level02: the policy says 32 bits, the model quantizes it"):
        encode_ngp(model, occupancy, UNIFORM8.replace({"hash.level02": 32}), tmp_path / "x.nhwb")
    apply_policy(model, UNIFORM8)  # installed, never calibrated
    with pytest.raises(ValueError, match="component hash.level00: the quantizer is not calibrated"):
        encode_ngp(model, occupancy, UNIFORM8, tmp_path / "x.nhwb")
    with pytest.raises(ValueError, match="entropy_model must be one of prior, empirical, not 'zip'"):
        encode_ngp(model, occupancy, UNIFORM8, tmp_path / "x.nhwb", entropy_model="zip")
    assert not (tmp_path / "x.nhwb").exists()
