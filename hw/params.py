"""The engines' parameter types, the config loader and the error type, under their original names.

Each engine's parameters live beside it (``hw/<engine>/params.py``) and the loader loops over the
engine registry (``hw.registry``); this module keeps ``from hw.params import ...`` working for the
code that imported them from here. Imports nothing heavy (no Amaranth, no torch).
"""

from hw.config import ConfigError
from hw.hadamard.params import HadamardConfig, HadamardParams
from hw.hash_encoder.params import HashEncoderParams
from hw.mlp_engine.params import MlpEngineParams, MlpLayer
from hw.registry import ENGINES as _REGISTRY
from hw.registry import load_config, save_config

__all__ = ["HashEncoderParams", "MlpEngineParams", "MlpLayer", "HadamardParams", "HadamardConfig", "ConfigError",
           "load_config", "save_config", "ENGINES"]

#: Config-file section name -> params type (the registry's ``params`` of each engine).
ENGINES: dict[str, type] = {name: engine.params for name, engine in _REGISTRY.items()}
