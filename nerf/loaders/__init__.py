"""Scene loaders, one module per format over ``SceneLoader`` (ngp_pl style), and their registry.

``load_scene(spec, split)`` asks the registered loaders in order (``LOADERS``) and loads with the
first whose ``detect`` accepts the spec: ``"builtin"``, a folder (or file) of transforms.json
(Instant-NGP / nerfstudio), a Blender folder (``transforms_*.json``), an LLFF folder
(``poses_bounds.npy``). A new format is one module with a ``SceneLoader`` subclass plus one
``register`` call here.
"""

from __future__ import annotations

from pathlib import Path

from nerf.cameras import DataError, SceneData
from nerf.loaders.base import SceneLoader, check_downscale
from nerf.loaders.blender import BlenderLoader, MissingFramesWarning, load_blender
from nerf.loaders.builtin import BUILTIN, BuiltinLoader
from nerf.loaders.llff import LLFFLoader, load_llff
from nerf.loaders.ngp import NGPLoader, load_ngp

__all__ = ["LOADERS", "register", "find_loader", "load_scene", "SceneLoader", "MissingFramesWarning",
           "load_blender", "load_llff", "load_ngp"]

#: name -> loader, in detection order.
LOADERS: dict[str, SceneLoader] = {}


def register(loader: SceneLoader) -> SceneLoader:
    """Add ``loader`` to the registry (after the others); its ``name`` must be new."""
    if not loader.name or loader.name in LOADERS:
        raise ValueError(f"scene loader name {loader.name!r} is empty or already registered")
    LOADERS[loader.name] = loader
    return loader


# transforms.json before Blender: a folder holding both is a single-file capture
for _loader in (BuiltinLoader(), NGPLoader(), BlenderLoader(), LLFFLoader()):
    register(_loader)


def find_loader(spec) -> SceneLoader:
    """The first registered loader that detects ``spec``.

    Raises:
        DataError: no such folder, or a folder no loader recognises (the message lists the formats).
    """
    if isinstance(spec, str) and spec == BUILTIN:
        return LOADERS["builtin"]
    path = Path(spec)
    formats = ", ".join(loader.describes for loader in LOADERS.values())
    if not path.exists():
        raise DataError(f"{path}: no such folder (a scene is {formats})")
    for loader in LOADERS.values():
        if loader.name != "builtin" and loader.detect(path):
            return loader
    raise DataError(f"{path}: not a scene folder (a scene is {formats})")


def load_scene(spec, split: str, *, downscale: int = 1, skip_missing: bool = False) -> SceneData:
    """Load ``split`` of the scene ``spec`` with the loader that recognises it (see the module doc).

    Args:
        spec: "builtin", a scene folder, or a transforms.json file.
        split: "train", "val" or "test".
        downscale: integer factor >= 1 (the built-in scene renders at 100 // downscale pixels).
        skip_missing: load the frames that exist when some listed ones are missing (transforms files).

    Raises:
        DataError: an unknown spec (naming the path), or whatever the chosen loader raises.
    """
    check_downscale(downscale)
    loader = find_loader(spec)
    return loader.load(spec if loader.name == "builtin" else Path(spec), split, downscale=downscale,
                       skip_missing=skip_missing)
