import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerf import scene
from nerf.data import (
    DataError,
    RayBatcher,
    SceneData,
    camera_directions,
    get_rays,
    load_blender,
    load_llff,
    load_scene,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LEGO = DATA / "nerf_synthetic_lego_400"
FERN = DATA / "nerf_llff_fern"
LEGO_ANGLE = 0.6911112070083618

needs_lego = pytest.mark.skipif(not LEGO.is_dir(), reason=f"real data absent: {LEGO} (see ../shared/data/README.md)")
needs_fern = pytest.mark.skipif(not FERN.is_dir(), reason=f"real data absent: {FERN} (see ../shared/data/README.md)")


def _project(pose, point, height, width, focal):
    """Independent pinhole projection: (u, v) pixel coordinates and depth of a world point."""
    rot, t = np.asarray(pose, np.float64)[:3, :3], np.asarray(pose, np.float64)[:3, 3]
    xc = rot.T @ (np.asarray(point, np.float64) - t)
    depth = -xc[2]
    return width / 2 + focal * xc[0] / depth, height / 2 - focal * xc[1] / depth, depth


def _random_pose(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3)
    return pose


# ---------------------------------------------------------------------------------- builtin


def test_builtin_is_deterministic_and_returns_copies():
    a = scene.builtin_scene("test")
    b = scene.builtin_scene("test")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.poses, b.poses)
    assert a.images is not b.images
    # a fresh render (no cache) gives the same pixels
    fresh = scene.render(a.poses, a.height, a.width, a.focal)
    assert np.array_equal(fresh, a.images)
    a.images[:] = 0  # must not leak into the cache
    assert np.array_equal(scene.builtin_scene("test").images, b.images)


@pytest.mark.parametrize("split, n", [("train", 48), ("val", 8), ("test", 8)])
def test_builtin_shapes_and_values(split, n):
    d = scene.builtin_scene(split)
    assert isinstance(d, SceneData) and d.name == "builtin" and d.split == split
    assert d.images.shape == (n, 100, 100, 3) and d.images.dtype == np.float32
    assert d.poses.shape == (n, 4, 4) and d.poses.dtype == np.float32
    assert (d.height, d.width) == (100, 100)
    assert d.focal == pytest.approx(0.5 * 100 / math.tan(0.5 * LEGO_ANGLE))
    assert (d.near, d.far) == (2.0, 6.0)
    assert d.bbox.tolist() == [[-1.5] * 3, [1.5] * 3]
    assert d.images.min() >= 0.0 and d.images.max() <= 1.0
    corners = d.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.all(corners == 1.0)  # white background
    non_white = np.any(d.images < 0.99, axis=-1).mean(axis=(1, 2))
    assert np.all(non_white > 0.1), non_white  # every view shows the objects


def test_builtin_cameras_look_at_origin_from_radius_4():
    for split in ("train", "val", "test"):
        poses = scene.camera_poses(split).astype(np.float64)
        centres = poses[:, :3, 3]
        assert np.allclose(np.linalg.norm(centres, axis=1), 4.0, atol=1e-5)
        # the optical axis (-z) points at the origin, image up has a +z component
        assert np.allclose(-poses[:, :3, 2], -centres / 4.0, atol=1e-5)
        assert np.all(poses[:, 2, 1] > 0)
        assert np.allclose(poses[:, :3, :3].transpose(0, 2, 1) @ poses[:, :3, :3], np.eye(3), atol=1e-5)
    train = scene.camera_poses("train")[:, :3, 3]
    test = scene.camera_poses("test")[:, :3, 3]
    assert np.min(np.linalg.norm(train[:, None] - test[None], axis=-1)) > 0.1  # held-out views are new


def test_builtin_geometry_matches_cameras():
    """The top (yellow) sphere's centre projects onto yellow pixels in every view."""
    d = scene.builtin_scene("test")
    top = next(s for s in scene.SHAPES if isinstance(s, scene.Sphere) and s.color[2] < 0.3 and s.color[1] > 0.7)
    for img, pose in zip(d.images, d.poses):
        u, v, depth = _project(pose, top.center, d.height, d.width, d.focal)
        assert d.near < depth < d.far
        r, g, b = img[int(v), int(u)]
        assert r > 0.3 and g > 0.3 and b < 0.5 * min(r, g), (r, g, b)


def test_builtin_resolution_and_errors():
    d = scene.builtin_scene("val", resolution=40)
    assert d.images.shape == (8, 40, 40, 3)
    assert d.focal == pytest.approx(0.5 * 40 / math.tan(0.5 * LEGO_ANGLE))
    assert load_scene("builtin", "val", downscale=2).images.shape == (8, 50, 50, 3)
    with pytest.raises(DataError, match=re.escape("unknown split 'bogus'; allowed: train, val, test")):
        scene.builtin_scene("bogus")
    with pytest.raises(DataError, match="resolution"):
        scene.builtin_scene("val", resolution=0)


# ---------------------------------------------------------------------------------- rays


def test_centre_ray_of_identity_pose_points_down_minus_z():
    origins, dirs = get_rays(5, 7, 10.0, np.eye(4))
    assert origins.shape == dirs.shape == (35, 3)
    assert origins.dtype == dirs.dtype == np.float32
    assert np.all(origins == 0)
    assert dirs[2 * 7 + 3].tolist() == [0.0, 0.0, -1.0]  # row 2, column 3: the centre pixel
    assert np.all(dirs[:, 2] == -1.0)  # not normalised: t is depth
    top_right = dirs[0 * 7 + 6]
    assert top_right[0] > 0 and top_right[1] > 0  # x right, y up, rows from the top
    assert dirs[0 * 7 + 6][0] == pytest.approx((6.5 - 3.5) / 10.0)


def test_rays_project_back_to_their_pixels():
    rng = np.random.default_rng(1)
    h, w, f = 12, 17, 20.0
    for _ in range(3):
        pose = _random_pose(rng)
        origins, dirs = get_rays(h, w, f, pose)
        assert np.allclose(origins, pose[:3, 3], atol=1e-6)
        for j, i in [(0, 0), (5, 9), (11, 16)]:
            point = origins[j * w + i].astype(np.float64) + 2.5 * dirs[j * w + i]
            u, v, depth = _project(pose, point, h, w, f)
            assert (u, v, depth) == pytest.approx((i + 0.5, j + 0.5, 2.5), abs=1e-4)
        # a known world point: the ray through its projection passes through it
        point = pose[:3, 3] + pose[:3, :3] @ np.array([0.3, -0.2, -3.0])
        u, v, depth = _project(pose, point, h, w, f)
        direction = pose[:3, :3] @ camera_directions(u, v, h, w, f)
        assert np.allclose(pose[:3, 3] + depth * direction, point, atol=1e-5)


def test_ray_batcher_is_deterministic_and_consistent():
    d = scene.builtin_scene("val")
    a, b, c = RayBatcher(d, 256, seed=7), RayBatcher(d, 256, seed=7), RayBatcher(d, 256, seed=8)
    for _ in range(3):
        ba, bb, bc = next(a), b.next_batch(), next(iter(c))
        for x, y in zip(ba, bb):
            assert np.array_equal(x, y)
        assert not np.array_equal(ba[2], bc[2]) or not np.array_equal(ba[1], bc[1])
    origins, dirs, rgb = ba
    assert origins.shape == dirs.shape == rgb.shape == (256, 3)
    assert origins.dtype == dirs.dtype == rgb.dtype == np.float32
    # every sample is a pixel-centre ray of one image, carrying that pixel's colour
    for o, dvec, colour in zip(origins, dirs, rgb):
        n = int(np.argmin(np.linalg.norm(d.poses[:, :3, 3] - o, axis=1)))
        assert np.allclose(d.poses[n, :3, 3], o)
        u, v, depth = _project(d.poses[n], o + dvec, d.height, d.width, d.focal)
        assert depth == pytest.approx(1.0, abs=1e-4)
        i, j = round(u - 0.5), round(v - 0.5)
        assert (u, v) == pytest.approx((i + 0.5, j + 0.5), abs=1e-3)
        assert np.array_equal(colour, d.images[n, j, i])
    with pytest.raises(ValueError, match="batch_size"):
        RayBatcher(d, 0)


# ---------------------------------------------------------------------------------- Blender


@pytest.fixture(scope="module")
def lego_train():
    if not LEGO.is_dir():
        pytest.skip(f"real data absent: {LEGO} (see ../shared/data/README.md)")
    return load_blender(LEGO, "train", downscale=4)


def _blend_then_box(path, factor, bg):
    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + np.asarray(bg) * (1 - rgba[..., 3:])
    h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
    return rgb.reshape(h, factor, w, factor, 3).mean(axis=(1, 3)), rgba[..., 3]


@pytest.mark.data
@needs_lego
def test_lego_train_downscaled(lego_train):
    d = lego_train
    assert d.images.shape == (100, 100, 100, 3) and d.images.dtype == np.float32
    assert (d.height, d.width) == (100, 100) and d.split == "train" and d.name == LEGO.name
    assert d.focal == pytest.approx(0.5 * 100 / math.tan(0.5 * LEGO_ANGLE))
    assert d.focal == pytest.approx(138.89, abs=0.01)
    assert (d.near, d.far) == (2.0, 6.0)
    assert d.bbox.tolist() == [[-1.5] * 3, [1.5] * 3]
    assert 0.0 <= d.images.min() and d.images.max() <= 1.0
    radius = np.linalg.norm(d.poses[:, :3, 3], axis=1)
    assert np.allclose(radius, 4.03, atol=0.01)
    # the cameras look at the origin along -z
    centres, axis = d.poses[:, :3, 3].astype(np.float64), -d.poses[:, :3, 2].astype(np.float64)
    assert np.all(np.linalg.norm(np.cross(centres, axis), axis=1) < 1e-3)
    assert np.all(np.einsum("ij,ij->i", centres, axis) < 0)


@pytest.mark.data
@needs_lego
def test_lego_blend_before_downscale_and_white_background(lego_train):
    want, alpha = _blend_then_box(LEGO / "train" / "r_0.png", 4, (1, 1, 1))
    assert np.allclose(lego_train.images[0], want, atol=1e-5)
    empty = alpha.reshape(100, 4, 100, 4).max(axis=(1, 3)) == 0
    assert empty.mean() > 0.3
    assert np.all(lego_train.images[0][empty] == 1.0)
    assert np.any(lego_train.images[0] < 0.5)  # the model itself is there


@pytest.fixture
def mini_lego(tmp_path):
    """Two lego frames in a fresh folder, file paths spelled the three ways the format allows."""
    if not LEGO.is_dir():
        pytest.skip(f"real data absent: {LEGO} (see ../shared/data/README.md)")
    meta = json.loads((LEGO / "transforms_val.json").read_text())
    (tmp_path / "val").mkdir()
    frames = []
    for k, spelling in enumerate(["./val/r_{}", "val/r_{}.png", "./val/r_{}.png"]):
        src = LEGO / (meta["frames"][k]["file_path"] + ".png")
        shutil.copy(src, tmp_path / "val" / f"r_{k}.png")
        frames.append({"file_path": spelling.format(k), "transform_matrix": meta["frames"][k]["transform_matrix"]})
    angle = meta["camera_angle_x"]
    (tmp_path / "transforms_val.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return tmp_path, meta


@pytest.mark.data
def test_blender_file_paths_background_and_dispatch(mini_lego):
    root, meta = mini_lego
    d = load_blender(root, "val", downscale=8, background=(0, 0, 0))
    assert d.images.shape == (3, 50, 50, 3)
    assert d.focal == pytest.approx(0.5 * 50 / math.tan(0.5 * LEGO_ANGLE))
    assert np.allclose(d.poses[1], meta["frames"][1]["transform_matrix"])
    want, alpha = _blend_then_box(root / "val" / "r_2.png", 8, (0, 0, 0))
    assert np.allclose(d.images[2], want, atol=1e-5)
    empty = alpha.reshape(50, 8, 50, 8).max(axis=(1, 3)) == 0
    assert np.all(d.images[2][empty] == 0.0)
    via = load_scene(root, "val", downscale=8)
    assert via.name == root.name and via.images.shape == (3, 50, 50, 3)
    assert np.all(via.images[2][empty] == 1.0)


# ---------------------------------------------------------------------------------- LLFF


@pytest.mark.data
@needs_fern
def test_fern_splits_sizes_and_focal():
    test = load_llff(FERN, "test")
    train = load_llff(FERN, "train")
    assert len(test.images) == 3 and len(train.images) == 17  # 20 views, every 8th held out
    assert test.images.shape == (3, 378, 504, 3) and test.images.dtype == np.float32
    raw = np.load(FERN / "poses_bounds.npy")
    assert test.focal == pytest.approx(raw[0, 14] * 378 / raw[0, 4])
    files = sorted((FERN / "images_8").iterdir())
    for k, n in enumerate([0, 8, 16]):
        assert np.array_equal(test.images[k], np.asarray(Image.open(files[n]).convert("RGB"), np.float32) / 255)
    val = load_llff(FERN, "val")
    assert np.array_equal(val.images, test.images) and np.array_equal(val.poses, test.poses)
    half = load_llff(FERN, "test", downscale=2)
    assert half.images.shape == (3, 189, 252, 3) and (half.height, half.width) == (189, 252)
    assert half.focal == pytest.approx(test.focal / 2)
    assert load_scene(FERN, "test", downscale=2).images.shape == (3, 189, 252, 3)


@pytest.mark.data
@needs_fern
def test_fern_poses_are_normalised():
    test, train = load_llff(FERN, "test"), load_llff(FERN, "train")
    poses = np.concatenate([test.poses, train.poses]).astype(np.float64)
    rot = poses[:, :3, :3]
    assert np.allclose(rot.transpose(0, 2, 1) @ rot, np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    assert np.allclose(poses[:, :3, 3].mean(axis=0), 0.0, atol=1e-5)  # recentred
    assert np.all(poses[:, 2, 2] > 0.9)  # forward-facing: every camera looks down about -z
    assert test.near == pytest.approx(0.9 / 0.75)  # closest bound at 1 / bd_factor, 10 % margin
    assert test.near < test.far
    assert (test.near, test.far, test.bbox.tolist()) == (train.near, train.far, train.bbox.tolist())
    # points on every centre ray between near and far lie inside the bbox
    for pose in poses:
        for t in (test.near, test.far):
            p = pose[:3, 3] - t * pose[:3, 2]
            assert np.all(p >= test.bbox[0] - 1e-4) and np.all(p <= test.bbox[1] + 1e-4)


def _write_llff(root, poses_llff, bounds, hw=(4, 6), folder="images"):
    """poses_llff: (N, 3, 4) in LLFF columns [down, right, back, t]; images all different."""
    n = len(poses_llff)
    hwf = np.tile(np.array([[hw[0]], [hw[1]], [5.0]]), (n, 1, 1))
    rows = np.concatenate([np.concatenate([poses_llff, hwf], axis=2).reshape(n, 15), bounds], axis=1)
    np.save(root / "poses_bounds.npy", rows)
    (root / folder).mkdir()
    for k in range(n):
        img = np.full((hw[0], hw[1], 3), 20 * k, dtype=np.uint8)
        Image.fromarray(img).save(root / folder / f"img{k:03d}.png")


def test_llff_axis_conversion_and_scale(tmp_path):
    rng = np.random.default_rng(3)
    rot = _random_pose(rng)[:3, :3]  # columns: down, right, back of every camera
    down, right = rot[:, 0], rot[:, 1]
    t0 = np.array([1.0, 2.0, 3.0])
    poses = np.stack([np.concatenate([rot, t[:, None]], axis=1) for t in (t0, t0 + 0.5 * right, t0 + 0.5 * down)])
    _write_llff(tmp_path, poses, np.array([[2.0, 10.0], [3.0, 8.0], [4.0, 9.0]]))
    test = load_llff(tmp_path, "test", holdout=2)  # views 0, 2
    train = load_llff(tmp_path, "train", holdout=2)  # view 1
    assert test.images.shape == (2, 4, 6, 3) and np.all(test.images[1] == 40 / 255)
    assert test.focal == pytest.approx(5.0)
    p0, p1, p2 = test.poses[0].astype(np.float64), train.poses[0].astype(np.float64), test.poses[1].astype(np.float64)
    scale = 1 / (2.0 * 0.75)
    # moving along LLFF's "right" is +x of the OpenGL camera, along "down" is -y
    assert np.allclose((np.linalg.inv(p0) @ p1)[:3, 3], [0.5 * scale, 0, 0], atol=1e-5)
    assert np.allclose((np.linalg.inv(p0) @ p2)[:3, 3], [0, -0.5 * scale, 0], atol=1e-5)
    assert np.allclose(p0[:3, :3], p1[:3, :3], atol=1e-6)
    assert (test.near, test.far) == pytest.approx((0.9 * 2.0 * scale, 10.0 * scale))


# ---------------------------------------------------------------------------------- errors


def _png(path, size=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 4), dtype=np.uint8)).save(path)


def _transforms(root, frames, split="train", **extra):
    meta = {"camera_angle_x": 0.7, "frames": frames, **extra}
    path = root / f"transforms_{split}.json"
    path.write_text(json.dumps(meta))
    return path


EYE = np.eye(4).tolist()


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    for load in (load_blender, load_llff, load_scene):
        with pytest.raises(DataError, match=re.escape(f"{missing}: no such folder")):
            load(missing, "train")


def test_missing_transforms_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'transforms_val.json'}: no such file")):
        load_blender(tmp_path, "val")


def test_frame_without_transform_matrix(tmp_path):
    _png(tmp_path / "train" / "a.png")
    path = _transforms(tmp_path, [{"file_path": "./train/a", "transform_matrix": EYE}, {"file_path": "./train/a"}])
    with pytest.raises(DataError, match=re.escape(f"{path}: frame 1 has no 'transform_matrix'")):
        load_blender(tmp_path, "train")


def test_bad_transform_matrix(tmp_path):
    _png(tmp_path / "train" / "a.png")
    path = _transforms(tmp_path, [{"file_path": "./train/a", "transform_matrix": [[1, 0], [0, 1]]}])
    with pytest.raises(DataError, match=re.escape(f"{path}: frame 0 'transform_matrix' must be a 4x4")):
        load_blender(tmp_path, "train")


def test_missing_image(tmp_path):
    _png(tmp_path / "train" / "a.png")
    path = _transforms(tmp_path, [{"file_path": "./train/a", "transform_matrix": EYE},
                                  {"file_path": "./train/b", "transform_matrix": EYE}])
    with pytest.raises(DataError) as err:
        load_blender(tmp_path, "train")
    msg = str(err.value)
    assert msg.startswith(f"{path}: frame 1 'file_path' './train/b': no such image file")
    assert str(tmp_path / "train" / "b.png") in msg


def test_transforms_without_frames_or_angle(tmp_path):
    path = tmp_path / "transforms_train.json"
    path.write_text(json.dumps({"camera_angle_x": 0.7}))
    with pytest.raises(DataError, match=re.escape(f"{path}: no 'frames'")):
        load_blender(tmp_path, "train")
    path.write_text(json.dumps({"frames": []}))
    with pytest.raises(DataError, match=re.escape(f"{path}: no 'camera_angle_x'")):
        load_blender(tmp_path, "train")
    path.write_text("{not json")
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot read JSON")):
        load_blender(tmp_path, "train")


def test_unknown_split_and_bad_downscale(tmp_path):
    for load in (load_blender, load_llff):
        with pytest.raises(DataError, match=re.escape(f"{tmp_path}: unknown split 'bogus'; allowed: train, val, test")):
            load(tmp_path, "bogus")
    with pytest.raises(DataError, match="downscale must be an integer >= 1, not 0"):
        load_blender(tmp_path, "train", downscale=0)


def test_image_sizes_must_match(tmp_path):
    _png(tmp_path / "train" / "a.png", (4, 4))
    _png(tmp_path / "train" / "b.png", (4, 6))
    _transforms(tmp_path, [{"file_path": "train/a.png", "transform_matrix": EYE},
                           {"file_path": "train/b.png", "transform_matrix": EYE}])
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train' / 'b.png'}: frame 1 image is 6x4")):
        load_blender(tmp_path, "train")


def test_llff_errors(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'poses_bounds.npy'}: no such file")):
        load_llff(tmp_path, "train")
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(DataError, match=re.escape("poses_bounds.npy: expected an (N, 17) numeric array")):
        load_llff(tmp_path, "train")
    poses = np.tile(np.eye(3, 4), (3, 1, 1))
    _write_llff(tmp_path, poses, np.array([[1.0, 5.0]] * 3), folder="images_8")
    (tmp_path / "images_8" / "img002.png").unlink()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'images_8'}: 2 images, but")):
        load_llff(tmp_path, "train")
    shutil.rmtree(tmp_path / "images_8")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no 'images_8' or 'images' folder")):
        load_llff(tmp_path, "train")


def test_load_scene_rejects_other_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: not a scene folder")):
        load_scene(tmp_path, "train")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'x'}: no such folder")):
        load_scene(tmp_path / "x", "train")
