"""Property-based fuzzing of the scene loaders: any input gives a SceneData or a DataError, never another exception."""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from nerf.data import DataError, SceneData, load_blender, load_llff, load_ngp

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20)

POSE = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]
NGP_KEYS = ["fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2", "camera_model", "camera_angle_x",
            "aabb_scale", "scale", "offset", "aabb", "frames", "train_filenames", "test_filenames", "k3", "is_fisheye"]
FRAME_KEYS = ["file_path", "transform_matrix", "fl_x", "w", "h", "k1", "cx"]


@pytest.fixture(scope="module")
def folder():
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    (root / "img").mkdir()
    for k in range(3):
        Image.fromarray(np.full((4, 4, 4), 70 * k, np.uint8)).save(root / "img" / f"{k}.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / "img" / "wide.jpg")
    yield root
    shutil.rmtree(root)


def _valid_ngp():
    return {"fl_x": 5.0, "w": 4, "h": 4, "k1": 0.01,
            "frames": [{"file_path": f"img/{k}.png", "transform_matrix": POSE} for k in range(3)]}


def _check(load, *args, **kwargs):
    try:
        out = load(*args, **kwargs)
    except DataError:
        return
    assert isinstance(out, SceneData)
    assert np.all(np.isfinite(out.images)) and np.all(np.isfinite(out.poses)) and np.all(np.isfinite(out.bbox))


@FUZZ
@given(doc=JSON)
def test_ngp_arbitrary_json(folder, doc):
    (folder / "transforms.json").write_text(json.dumps(doc))
    _check(load_ngp, folder, "train")


@FUZZ
@given(data=st.data(), split=st.sampled_from(["train", "test"]))
def test_ngp_valid_file_with_fields_replaced_or_dropped(folder, data, split):
    meta = _valid_ngp()
    for key in data.draw(st.lists(st.sampled_from(NGP_KEYS), max_size=3)):
        if data.draw(st.booleans()):
            meta.pop(key, None)
        else:
            meta[key] = data.draw(JSON)
    if isinstance(meta.get("frames"), list):
        for frame in meta["frames"]:
            if isinstance(frame, dict) and data.draw(st.booleans()):
                key = data.draw(st.sampled_from(FRAME_KEYS))
                frame[key] = data.draw(JSON | st.sampled_from(["img/wide.jpg", "../x.png", "img/none.png"]))
    (folder / "transforms.json").write_text(json.dumps(meta))
    _check(load_ngp, folder, split, skip_missing=data.draw(st.booleans()))


@FUZZ
@given(data=st.data())
def test_blender_fields_replaced_or_dropped(folder, data):
    meta = {"camera_angle_x": 0.7, "frames": [{"file_path": f"img/{k}", "transform_matrix": POSE} for k in range(3)]}
    for key in data.draw(st.lists(st.sampled_from(["camera_angle_x", "frames"]), max_size=2)):
        meta[key] = data.draw(JSON)
    if isinstance(meta.get("frames"), list):
        for frame in meta["frames"]:
            if isinstance(frame, dict) and data.draw(st.booleans()):
                frame[data.draw(st.sampled_from(["file_path", "transform_matrix"]))] = data.draw(JSON)
    (folder / "transforms_train.json").write_text(json.dumps(meta) if data.draw(st.booleans()) else json.dumps(data.draw(JSON)))
    _check(load_blender, folder, "train")


@pytest.fixture(scope="module")
def llff_folder():
    root = Path(tempfile.mkdtemp(prefix="fuzz-llff-"))
    (root / "images").mkdir()
    for k in range(3):
        Image.fromarray(np.full((4, 6, 3), 50 * k, np.uint8)).save(root / "images" / f"{k}.png")
    yield root
    shutil.rmtree(root)


@FUZZ
@given(arr=st.one_of(
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=17, max_size=17),
             min_size=3, max_size=3).map(np.array),
    st.lists(st.floats(-10, 10), min_size=0, max_size=60).map(lambda v: np.array(v).reshape(-1, 3) if len(v) % 3 == 0
                                                               else np.array(v))))
def test_llff_arbitrary_pose_arrays(llff_folder, arr):
    np.save(llff_folder / "poses_bounds.npy", arr)
    _check(load_llff, llff_folder, "train", holdout=2)


@FUZZ
@given(rot=st.lists(st.floats(-2, 2), min_size=9, max_size=9), bounds=st.lists(st.floats(1e-3, 1e3), min_size=2, max_size=2))
def test_llff_near_valid_poses(llff_folder, rot, bounds):
    rows = []
    for k in range(3):
        r = np.eye(3) if k else np.array(rot).reshape(3, 3)
        pose = np.concatenate([r, [[k], [0.0], [0.0]], [[4.0], [6.0], [5.0]]], axis=1)
        rows.append(np.concatenate([pose.ravel(), sorted(bounds)]))
    np.save(llff_folder / "poses_bounds.npy", np.array(rows))
    _check(load_llff, llff_folder, "train", holdout=2)
