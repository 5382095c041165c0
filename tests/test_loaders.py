"""Scene loaders: the registry, the Instant-NGP / nerfstudio transforms.json loader, pose and path checks."""

import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerf import scene
from nerf.cameras import OpenCVDistortion, camera_directions, get_rays
from nerf.data import DataError, MissingFramesWarning, SceneData, load_blender, load_ngp, load_scene
from nerf.loaders import LOADERS, SceneLoader, find_loader, register

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LEGO = DATA / "nerf_synthetic_lego_400"
needs_lego = pytest.mark.skipif(not LEGO.is_dir(), reason=f"real data absent: {LEGO} (see ../shared/data/README.md)")

# the capture's camera: non-square, fx != fy, principal point off-centre, a barrel lens with tangential terms
W, H, FX, FY, CX, CY = 80, 60, 70.0, 72.5, 42.3, 27.6
LENS = OpenCVDistortion(k1=-0.3, k2=0.08, p1=0.02, p2=-0.015)
EYE = np.eye(4).tolist()


# ---------------------------------------------------------------------------------- cameras


def test_distortion_inverse_recovers_the_point():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.7, 0.7, 500), rng.uniform(-0.5, 0.5, 500)
    xd, yd = LENS.apply(x, y)
    assert np.max(np.hypot(xd - x, yd - y)) > 1e-2  # the lens does move points
    xu, yu = LENS.invert(xd, yd)
    assert np.allclose(xu, x, atol=1e-10) and np.allclose(yu, y, atol=1e-10)


def test_distortion_model_is_opencvs():
    """A hand-computed point of OpenCV's model: x_d = x(1 + k1 r2 + k2 r4) + 2 p1 x y + p2 (r2 + 2 x^2)."""
    d = OpenCVDistortion(k1=0.1, k2=0.01, p1=0.001, p2=0.002)
    xd, yd = d.apply(0.3, -0.2)
    r2 = 0.13
    radial = 1 + 0.1 * r2 + 0.01 * r2 * r2
    assert xd == pytest.approx(0.3 * radial + 2 * 0.001 * 0.3 * -0.2 + 0.002 * (r2 + 2 * 0.09))
    assert yd == pytest.approx(-0.2 * radial + 0.001 * (r2 + 2 * 0.04) + 2 * 0.002 * 0.3 * -0.2)


def test_rays_honour_the_principal_point_and_both_focal_lengths():
    pose = np.eye(4)
    pose[:3, 3] = [0.5, -1.0, 2.0]
    origins, dirs = get_rays(H, W, FX, pose, focal_y=FY, cx=CX, cy=CY)
    # the ray through the principal point is the optical axis
    d = camera_directions(CX, CY, H, W, FX, focal_y=FY, cx=CX, cy=CY)
    assert d.tolist() == [0.0, 0.0, -1.0]
    # every pixel centre projects back through the same pinhole
    j, i = np.divmod(np.arange(H * W), W)
    point = dirs.astype(np.float64) * 3.0  # depth 3 in front of the camera (identity rotation)
    assert np.allclose(FX * point[:, 0] / 3.0 + CX, i + 0.5, atol=1e-4)
    assert np.allclose(-FY * point[:, 1] / 3.0 + CY, j + 0.5, atol=1e-4)
    assert np.allclose(origins, pose[:3, 3])


# ---------------------------------------------------------------------------------- a capture built here


def _render_distorted(pose, lens, supersample=3):
    """The built-in scene seen through the distorted camera: RGB on white and alpha, (H, W, ...)."""
    s = supersample
    j, i = np.mgrid[0:H * s, 0:W * s]
    u, v = (i.ravel() + 0.5) / s, (j.ravel() + 0.5) / s
    x, y = lens.invert((u - CX) / FX, (v - CY) / FY)  # the undistorted direction each sensor point sees
    cam = np.stack([x, -y, -np.ones_like(x)])  # OpenGL camera axes
    d = np.asarray(pose, np.float64)[:3, :3] @ cam
    rgb, hit = scene.shade_rays(np.broadcast_to(np.asarray(pose, np.float64)[:3, 3:4], d.shape), d)
    rgb = rgb.T.reshape(H, s, W, s, 3).mean(axis=(1, 3))
    return rgb, hit.reshape(H, s, W, s).mean(axis=(1, 3))


def _write_capture(root: Path, n=16, lens=LENS, fmt="png", per_frame=False, **extra):
    """A transforms.json capture of the built-in scene through ``lens``; frame k is images/f_kk.<fmt>."""
    poses = scene.camera_poses("train")[:n]
    (root / "images").mkdir(parents=True, exist_ok=True)
    camera = {"fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H,
              "k1": lens.k1, "k2": lens.k2, "p1": lens.p1, "p2": lens.p2}
    frames = []
    for k, pose in enumerate(poses):
        rgb, alpha = _render_distorted(pose, lens)
        name = f"images/f_{k:02d}.{fmt}"
        if fmt == "png":  # straight alpha: the colour of the covered part
            straight = np.where(alpha[..., None] > 0, (rgb - (1 - alpha[..., None])) / np.maximum(alpha, 1e-6)[..., None], 0)
            rgba = np.concatenate([straight, alpha[..., None]], axis=-1)
            Image.fromarray(np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA").save(root / name)
        else:
            Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(root / name, quality=95)
        frame = {"file_path": name, "transform_matrix": pose.tolist()}
        if per_frame:
            frame.update(camera)
        frames.append(frame)
    meta = {"camera_model": "OPENCV", **({} if per_frame else camera), "aabb_scale": 1, "frames": frames[::-1], **extra}
    (root / "transforms.json").write_text(json.dumps(meta))
    return poses


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    poses = _write_capture(root, n=9)
    return root, poses


def _pinhole_truth(d: SceneData):
    return scene.render_rgba(d.poses, d.height, d.width, d.focal, supersample=3, focal_y=d.focal_y, cx=d.cx, cy=d.cy)


def test_undistortion_recovers_the_pinhole_render(capture):
    root, poses = capture
    d = load_scene(root, "test")
    assert find_loader(root).name == "ngp"
    assert d.images.shape == (2, H, W, 3) and d.alpha.shape == (2, H, W)
    # frames sorted by file_path (f_00 .. f_08; the file lists them reversed); every 8th held out
    assert np.allclose(d.poses, poses[[0, 8]])
    assert (d.cx, d.cy) == (CX, CY)
    # a barrel lens needs no zoom: the pinhole keeps the capture's focal lengths
    assert (d.focal, d.focal_y) == (FX, FY)
    truth_rgb, truth_alpha = _pinhole_truth(d)
    # bilinear resampling of 8-bit images blurs the sharp checker edges a little, hence 35 dB (measured
    # 35.6) rather than more; a wrong convention costs far more: p1/p2 swapped 27.5 dB, their signs
    # flipped 27.1 dB, the principal point at the centre 16.1 dB
    assert _psnr(d.images, truth_rgb) > 35.0
    assert np.abs(d.alpha - truth_alpha).mean() < 0.01
    # without undistortion the same comparison is worse (32.8 dB): the test sees the lens
    raw = np.stack([np.asarray(Image.open(root / f"images/f_{k:02d}.png").convert("RGBA"), np.float32) / 255
                    for k in (0, 8)])
    raw_rgb = raw[..., :3] * raw[..., 3:] + 1 - raw[..., 3:]
    assert _psnr(raw_rgb, truth_rgb) < _psnr(d.images, truth_rgb) - 2.0


def _psnr(a, b):
    return float(-10 * np.log10(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_train_split_and_registry_dispatch(capture):
    root, poses = capture
    train = load_scene(root, "train")
    assert len(train.images) == 7 and train.name == root.name and train.split == "train"
    assert np.allclose(train.poses, np.delete(poses, [0, 8], axis=0))
    # the transforms file itself is a scene spec too
    assert np.array_equal(load_scene(root / "transforms.json", "val").images, load_scene(root, "test").images)
    # NGP scene box: aabb_scale 1 at scale 0.33 / offset 0.5 -> +-0.5 / 0.33 world units
    assert np.allclose(train.bbox, [[-0.5 / 0.33] * 3, [0.5 / 0.33] * 3])


def test_pincushion_lens_zooms_so_no_pixel_is_invented(tmp_path):
    lens = OpenCVDistortion(k1=0.15)
    _write_capture(tmp_path, n=9, lens=lens)
    d = load_ngp(tmp_path, "test")
    assert d.focal > FX and d.focal_y / d.focal == pytest.approx(FY / FX)
    truth_rgb, _ = _pinhole_truth(d)
    assert _psnr(d.images, truth_rgb) > 31.0  # measured 32.2: zooming in 1.07x upsamples, so more blur


def test_jpeg_frames_per_frame_intrinsics_downscale_and_aabb_scale(tmp_path):
    _write_capture(tmp_path, n=9, fmt="jpg", per_frame=True, aabb_scale=4, offset=[0.5, 0.6, 0.5], scale=0.5)
    d = load_ngp(tmp_path, "test", downscale=2)
    assert d.alpha is None and d.images.shape == (2, H // 2, W // 2, 3)
    assert (d.focal, d.focal_y, d.cx, d.cy) == pytest.approx((FX / 2, FY / 2, CX / 2, CY / 2))
    # aabb_scale 4: the cube [0.5 - 2, 0.5 + 2] in NGP units, mapped back by (p - offset) / scale
    assert np.allclose(d.bbox, [[-4.0, -4.2, -4.0], [4.0, 3.8, 4.0]])
    truth = scene.render_rgba(d.poses, d.height, d.width, d.focal, supersample=6, focal_y=d.focal_y, cx=d.cx, cy=d.cy)[0]
    assert _psnr(d.images, truth) > 30.0  # JPEG at quality 95 and the 2x box filter add their own error


def test_named_splits(tmp_path):
    _write_capture(tmp_path, n=4, lens=OpenCVDistortion(), train_filenames=["images/f_01.png", "./images/f_03.png"],
                   test_filenames=["images/f_02.png"])
    assert len(load_ngp(tmp_path, "train").images) == 2
    assert len(load_ngp(tmp_path, "test").images) == 1
    assert len(load_ngp(tmp_path, "val").images) == 1  # val falls back on the test list
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["test_filenames"] = ["images/nope.png"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms.json: 'test_filenames' names 1 file\(s\) no frame has: images/nope.png"):
        load_ngp(tmp_path, "test")


# ---------------------------------------------------------------------------------- bad captures


@pytest.fixture
def small(tmp_path):
    """Three 4 x 4 PNG frames and a valid transforms.json; returns (root, meta) to edit."""
    (tmp_path / "img").mkdir()
    for k in range(3):
        Image.fromarray(np.full((4, 4, 3), 60 * k, np.uint8)).save(tmp_path / "img" / f"{k}.png")
    pose = np.eye(4)
    pose[2, 3] = 3.0
    meta = {"fl_x": 5.0, "w": 4, "h": 4,
            "frames": [{"file_path": f"img/{k}.png", "transform_matrix": pose.tolist()} for k in range(3)]}
    return tmp_path, meta


def _load(root, meta, split="train", **kw):
    path = root / "transforms.json"
    path.write_text(json.dumps(meta) if not isinstance(meta, str) else meta)
    return load_ngp(root, split, **kw)


def test_small_capture_loads(small):
    root, meta = small
    d = _load(root, meta, "train")
    assert len(d.images) == 2 and d.alpha is None and d.focal == d.focal_y == 5.0 and (d.cx, d.cy) == (2.0, 2.0)


def test_missing_frames_are_named_and_skip_missing_loads_the_rest(small):
    root, meta = small
    meta["frames"].append({"file_path": "img/gone.jpg", "transform_matrix": meta["frames"][0]["transform_matrix"]})
    meta["frames"].append({"file_path": "img/lost", "transform_matrix": meta["frames"][0]["transform_matrix"]})
    path = root / "transforms.json"
    with pytest.raises(DataError) as err:
        _load(root, meta)
    msg = str(err.value)
    assert msg.startswith(f"{path}: frame 3 'file_path' 'img/gone.jpg': no such image file")
    assert "also missing: frame 4 'img/lost'" in msg and "--skip-missing" in msg
    with pytest.warns(MissingFramesWarning, match=r"skipped 2 listed but missing frame\(s\): 'img/gone.jpg', 'img/lost'"):
        d = _load(root, meta, "train", skip_missing=True)
    assert len(d.images) == 2  # frames 1, 2 (0 is held out; the missing ones keep their split slots)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(camera_model="OPENCV_FISHEYE"), "'camera_model' 'OPENCV_FISHEYE' is not supported"),
    (lambda m: m.update(camera_model="EQUIRECTANGULAR"), "'camera_model' 'EQUIRECTANGULAR' is not supported"),
    (lambda m: m.update(k3=0.01), "distortion key 'k3' (= 0.01) is not supported: only the OpenCV"),
    (lambda m: m["frames"][1].update(k4=0.2), "frame 1: distortion key 'k4' (= 0.2) is not supported"),
    (lambda m: m.update(is_fisheye=True), "'is_fisheye' is true"),
    (lambda m: m.pop("fl_x"), "no 'fl_x' (nor 'camera_angle_x')"),
    (lambda m: m.update(fl_x=-3), "'fl_x' must be a finite number > 0, not -3"),
    (lambda m: m.update(w=True), "'w' must be an integer in [1, 65536], not True"),
    (lambda m: m.update(w=5), "the image is 4x4, but 'w' x 'h' say 5x4"),
    (lambda m: m.update(aabb_scale=0), "'aabb_scale' must be a finite number > 0, not 0"),
    (lambda m: m.update(frames=[]), "'frames' must be"),
    (lambda m: m.pop("frames"), "no 'frames'"),
    (lambda m: m["frames"][2].pop("transform_matrix"), "frame 2 has no 'transform_matrix'"),
    (lambda m: m["frames"][2].update(file_path=7), "frame 2 'file_path' must be a string, not 7"),
    (lambda m: m["frames"][1].update(file_path="../../etc/passwd"), "frame 1 'file_path' '../../etc/passwd' leaves the scene folder"),
    (lambda m: m["frames"][1].update(file_path="/etc/passwd"), "frame 1 'file_path' '/etc/passwd' leaves the scene folder"),
    (lambda m: m["frames"][1].update(file_path="img/../../x.png"), "leaves the scene folder"),
    (lambda m: m["frames"][1].update(file_path="./"), "frame 1 'file_path' './' names no file"),
    (lambda m: m["frames"][0].update(transform_matrix=np.zeros((4, 4)).tolist()),
     "frame 0 'transform_matrix' is degenerate: the last row is [0.0, 0.0, 0.0, 0.0]"),
    (lambda m: m["frames"][0].update(transform_matrix=np.diag([1.0, 1.0, 0.0, 1.0]).tolist()),
     "frame 0 'transform_matrix' is degenerate: the rotation block is not orthonormal"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1e400], [0, 0, 0, 1]]),
     "frame 0 'transform_matrix' is degenerate: it contains NaN or infinite entries"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), "frame 0 'transform_matrix' must be a 4x4 matrix"),
    (lambda m: m.update(train_filenames=["img/1.png"], test_filenames=[]), "split 'test' is empty"),
])
def test_bad_captures_name_file_and_field(small, edit, message):
    root, meta = small
    edit(meta)
    with pytest.raises(DataError) as err:
        _load(root, meta, "test" if "test" in message else "train")
    assert str(err.value).startswith(str(root / "transforms.json")), str(err.value)
    assert message in str(err.value)


def test_not_json_and_no_transforms(small):
    root, _ = small
    with pytest.raises(DataError, match=re.escape(f"{root / 'transforms.json'}: no such file")):
        load_ngp(root, "train")
    with pytest.raises(DataError, match=re.escape(f"{root / 'transforms.json'}: cannot read JSON")):
        _load(root, "{not json")
    with pytest.raises(DataError, match=re.escape(f"{root / 'transforms.json'} must be a JSON object, not [1, 2]")):
        _load(root, "[1, 2]")


def test_blender_refuses_escaping_paths_and_degenerate_poses(tmp_path):
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(tmp_path / "a.png")
    path = tmp_path / "transforms_train.json"
    for frame, message in [({"file_path": "../../etc/passwd", "transform_matrix": EYE},
                            "frame 0 'file_path' '../../etc/passwd' leaves the scene folder"),
                           ({"file_path": "a", "transform_matrix": np.zeros((4, 4)).tolist()},
                            "frame 0 'transform_matrix' is degenerate")]:
        path.write_text(json.dumps({"camera_angle_x": 0.7, "frames": [frame]}))
        with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
            load_blender(tmp_path, "train")


def test_llff_refuses_a_degenerate_pose(tmp_path):
    (tmp_path / "images").mkdir()
    rows = []
    for k in range(3):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "images" / f"{k}.png")
        pose = np.concatenate([np.eye(3), [[k], [0], [0]], [[4], [6], [5]]], axis=1)
        rows.append(np.concatenate([pose.ravel(), [1.0, 5.0]]))
    rows[1][:15] = np.concatenate([np.zeros((3, 4)), [[4], [6], [5]]], axis=1).ravel()
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'poses_bounds.npy'}: row 1 (image 1.png) pose is degenerate")):
        load_scene(tmp_path, "train")


# ---------------------------------------------------------------------------------- registry


def test_registry_order_and_errors(tmp_path):
    assert list(LOADERS) == ["builtin", "ngp", "blender", "llff"]
    assert find_loader("builtin").name == "builtin"
    with pytest.raises(ValueError, match="already registered"):
        register(LOADERS["ngp"])
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: not a scene folder (a scene is 'builtin', an Instant-NGP")):
        find_loader(tmp_path)


def test_a_registered_loader_is_dispatched_to(tmp_path):
    class Marker(SceneLoader):
        name = "marker"
        describes = "a folder with MARKER"

        def detect(self, path):
            return (path / "MARKER").is_file()

        def load(self, path, split, *, downscale=1, skip_missing=False):
            return scene.builtin_scene(split, resolution=4)

    (tmp_path / "MARKER").write_text("")
    register(Marker())
    try:
        assert load_scene(tmp_path, "val").images.shape == (8, 4, 4, 3)
    finally:
        del LOADERS["marker"]


# ---------------------------------------------------------------------------------- lego as transforms.json


def convert_lego(root: Path, per_split: int | None = None) -> Path:
    """Lego's train and test splits as one Instant-NGP transforms.json (images linked, not copied)."""
    frames, names = [], {}
    for split in ("train", "test"):
        meta = json.loads((LEGO / f"transforms_{split}.json").read_text())
        (root / split).symlink_to(LEGO / split, target_is_directory=True)
        chosen = meta["frames"][:per_split]
        names[split] = [f["file_path"][2:] + ".png" for f in chosen]
        frames += [{"file_path": n, "transform_matrix": f["transform_matrix"]} for n, f in zip(names[split], chosen)]
    fl = 0.5 * 400 / math.tan(0.5 * meta["camera_angle_x"])
    (root / "transforms.json").write_text(json.dumps({
        "camera_model": "OPENCV", "fl_x": fl, "fl_y": fl, "cx": 200.0, "cy": 200.0, "w": 400, "h": 400,
        "k1": 0, "k2": 0, "p1": 0, "p2": 0, "aabb_scale": 1, "frames": frames,
        "train_filenames": names["train"], "test_filenames": names["test"]}))
    return root


@pytest.mark.data
@needs_lego
def test_lego_as_transforms_json_equals_the_blender_loader(tmp_path):
    (tmp_path / "lego_ngp").mkdir()
    root = convert_lego(tmp_path / "lego_ngp", per_split=12)
    for split in ("train", "test"):
        ngp = load_scene(root, split, downscale=4)
        blender = load_blender(LEGO, split, downscale=4)
        order = sorted(range(12), key=lambda k: f"r_{k}.png")  # transforms.json frames go by file_path
        assert np.array_equal(ngp.images, blender.images[order])  # no resampling for an undistorted pinhole
        assert np.array_equal(ngp.alpha, blender.alpha[order])
        assert np.array_equal(ngp.poses, blender.poses[order])
        assert ngp.focal == pytest.approx(blender.focal) and (ngp.cx, ngp.cy) == (50.0, 50.0)
        assert np.allclose(ngp.bbox, [[-0.5 / 0.33] * 3, [0.5 / 0.33] * 3])  # lego's own box is +-1.5


@pytest.mark.data
@needs_lego
def test_cli_trains_on_a_transforms_json_folder(tmp_path):
    from flows.cli import main

    root = tmp_path / "lego_ngp"
    root.mkdir()
    convert_lego(root, per_split=2)  # 2 views per split at 50 x 50: the evaluation stays short
    rc = main(["--runs", str(tmp_path / "runs"), "train", "--scene", str(root), "--iterations", "3", "--downscale", "8",
               "--no-compile"])
    assert rc == 0
    s = json.loads((tmp_path / "runs" / "train-lego_ngp-tiny" / "summary.json").read_text())
    assert s["finished"] and s["iterations"] == 3 and s["resolution"] == [50, 50] and s["background"] == "random"
