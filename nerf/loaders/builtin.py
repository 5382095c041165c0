"""The built-in scene (``nerf.scene``) as a loader: the spec string "builtin"."""

from __future__ import annotations

from pathlib import Path

from nerf.cameras import DataError, SceneData
from nerf.loaders.base import SceneLoader, check_downscale

__all__ = ["BuiltinLoader", "BUILTIN"]

#: The scene spec that names the built-in scene (it wins over a folder of that name).
BUILTIN = "builtin"


class BuiltinLoader(SceneLoader):
    """``"builtin"``: :func:`nerf.scene.builtin_scene`, rendered at ``DEFAULT_RESOLUTION // downscale``."""

    name = "builtin"
    describes = "'builtin'"

    def detect(self, path: Path) -> bool:
        return str(path) == BUILTIN

    def load(self, path: Path, split: str, *, downscale: int = 1, skip_missing: bool = False) -> SceneData:
        from nerf import scene

        factor = check_downscale(downscale)
        if scene.DEFAULT_RESOLUTION // factor < 1:
            raise DataError(f"builtin: downscale {factor} leaves no pixels")
        return scene.builtin_scene(split, resolution=scene.DEFAULT_RESOLUTION // factor)
