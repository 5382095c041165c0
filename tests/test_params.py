import re

import pytest
import yaml
from hypothesis import given, strategies as st

from hw.params import ConfigError, HashEncoderParams, load_config, save_config
from tests.conftest import CONFIGS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"levels": 0}, "HashEncoderParams.levels must be an integer in [1, 32], not 0"),
        ({"levels": 33}, "HashEncoderParams.levels must be an integer in [1, 32], not 33"),
        ({"levels": 2.0}, "HashEncoderParams.levels must be an integer in [1, 32], not 2.0"),
        ({"levels": True}, "HashEncoderParams.levels must be an integer in [1, 32], not True"),
        ({"log2_table_size": 3}, "HashEncoderParams.log2_table_size must be an integer in [4, 24], not 3"),
        ({"features": 0}, "HashEncoderParams.features must be an integer in [1, 8], not 0"),
        ({"feature_bits": 1}, "HashEncoderParams.feature_bits must be an integer in [2, 16], not 1"),
        ({"feature_bits": 17}, "HashEncoderParams.feature_bits must be an integer in [2, 16], not 17"),
        ({"coord_bits": 25}, "HashEncoderParams.coord_bits must be an integer in [4, 24], not 25"),
        ({"n_min": 0}, "HashEncoderParams.n_min must be an integer in [1, 16777216], not 0"),
        ({"coord_bits": 8, "n_min": 300}, "HashEncoderParams.n_min must be an integer in [1, 256], not 300"),
        ({"n_min": 32, "n_max": 16}, "HashEncoderParams.n_max must be an integer in [32, 65536], not 16"),
        ({"coord_bits": 8, "n_max": 512}, "HashEncoderParams.n_max must be an integer in [16, 256], not 512"),
        ({"levels": 1, "n_min": 16, "n_max": 32, "lanes": 1},
         "HashEncoderParams.n_max must equal n_min (16) when levels is 1, not 32"),
        ({"levels": 4, "lanes": 5}, "HashEncoderParams.lanes must be an integer in [1, 4], not 5"),
        ({"lanes": 0}, "HashEncoderParams.lanes must be an integer in [1, 32], not 0"),
        ({"lanes": "2"}, "HashEncoderParams.lanes must be an integer in [1, 32], not '2'"),
    ],
)
def test_invalid_params_name_field_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        HashEncoderParams(**kwargs)


def test_params_are_keyword_only_and_frozen():
    with pytest.raises(ConfigError, match="Unexpected positional argument"):  # keyword-only
        HashEncoderParams(16)  # noqa
    p = HashEncoderParams()
    with pytest.raises(AttributeError):
        p.levels = 3


def test_resolutions_follow_instant_ngp_and_end_at_n_max():
    p = HashEncoderParams(levels=16, n_min=16, n_max=512, coord_bits=16)
    res = p.resolutions
    assert res[0] == 16 and res[-1] == 512
    assert all(a <= b for a, b in zip(res, res[1:]))
    b = (512 / 16) ** (1 / 15)
    assert res == tuple(int(16 * b**l + 1e-6) for l in range(16))
    # Instant-NGP eq. 2 by floor: level 1 is floor(16 * 1.2599) = 20, not round() = 20.16 -> 20
    assert res[1] == 20 and res[2] == 25


def test_dense_and_hashed_levels():
    p = HashEncoderParams(levels=4, log2_table_size=8, n_min=2, n_max=16, coord_bits=10)
    assert p.resolutions == (2, 4, 8, 16)
    assert p.dense == (True, True, False, False)  # 5^3 = 125 <= 256 < 9^3 = 729


def test_derived_timing_constants():
    p = HashEncoderParams(levels=6, lanes=4)
    assert p.groups == 2
    assert p.out_bits == p.feature_bits + p.coord_bits
    assert p.fifo_depth == (2 + HashEncoderParams.PIPELINE_STAGES + 1) // 2 + 1


def test_yaml_round_trip(tmp_path):
    p = HashEncoderParams(levels=5, log2_table_size=10, features=3, feature_bits=6, coord_bits=12,
                          n_min=4, n_max=100, lanes=2)
    path = tmp_path / "sub" / "preset.yaml"
    save_config(path, {"hash_encoder": p})
    assert load_config(path) == {"hash_encoder": p}
    assert yaml.safe_load(path.read_text())["hash_encoder"]["levels"] == 5
    assert not [f for f in path.parent.iterdir() if f.name.startswith(".")]  # no temporary left


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("hash_encoder:\n  levels: 4\n  level_count: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'level_count' in hash_encoder \(allowed: levels, "):
        load_config(path)


def test_unknown_section_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("hash_encodr:\n  levels: 4\n")
    with pytest.raises(ConfigError, match=r"unknown section 'hash_encodr' in .*bad.yaml' \(allowed: hash_encoder, mlp_engine, "
                       r"hadamard, hash_encoder_axi, sh_unit, activation, requant, compositor, fixed_mv\)"):
        load_config(path)


def test_bad_value_in_file_names_file_and_field(tmp_path):
    path = tmp_path / "zero.yaml"
    path.write_text("hash_encoder:\n  levels: 0\n")
    with pytest.raises(ConfigError, match=r"zero.yaml: HashEncoderParams.levels must be an integer in \[1, 32\], not 0"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("hash_encoder: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)


def test_presets_load_and_cover_required_cases():
    loaded = {p.stem: load_config(p) for p in CONFIGS.glob("*.yaml")}
    presets = {name: sections["hash_encoder"] for name, sections in loaded.items() if "hash_encoder" in sections}
    assert {"test-small", "edge", "default"} <= presets.keys()
    assert any(not all(p.dense) for p in presets.values())  # hashed levels
    assert any(p.lanes > 1 for p in presets.values())
    assert any(p.features != 2 or p.feature_bits != 8 for p in presets.values())


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 1 << 25), st.floats(allow_nan=True), st.text(max_size=4),
                    st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_KEYS = st.one_of(st.sampled_from(["levels", "log2_table_size", "features", "feature_bits", "coord_bits", "n_min",
                                   "n_max", "lanes", "rows", "cols", "max_in", "max_out", "n", "out_size", "in_bits"]),
                  st.text(max_size=6))
_SECTIONS = st.one_of(st.sampled_from(["hash_encoder", "mlp_engine", "hadamard"]), st.text(max_size=8))


@given(st.one_of(st.dictionaries(_SECTIONS, st.one_of(st.dictionaries(_KEYS, _VALUES, max_size=6), _VALUES), max_size=3),
                 _VALUES))
def test_load_config_gives_params_or_a_config_error(tmp_path_factory, data):
    """Any YAML document (sections, keys, values of any type): parameters or a ConfigError, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "preset.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        sections = load_config(path)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert sections and all(type(p).from_dict(p.to_dict()) == p for p in sections.values())


@pytest.mark.parametrize("text", ["hash_encoder: [1, 2\n", "\x00\x01", "hash_encoder:\n  levels: !!python/object:os.system x\n",
                                  "- 1\n- 2\n", "hash_encoder:\n  levels: 1e400\n"])
def test_odd_yaml_is_a_config_error(tmp_path, text):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="odd.yaml"):
        load_config(path)
