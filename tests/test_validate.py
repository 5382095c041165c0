"""common.validate: the one validation mechanism (pydantic) and its messages."""

import argparse
import dataclasses
from typing import Annotated

import pytest
from hypothesis import given, strategies as st
from pydantic import Field

from common.validate import from_mapping, option, range_message, spec


class SpecError(ValueError):
    pass


@spec(SpecError)
class Example:
    levels: Annotated[int, Field(ge=1, le=32)] = 4
    n_max: Annotated[int, Field(ge=1)] = 8
    flag: bool = False
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0

    STAGES = 6  # a constant, not a field

    def __post_init__(self):
        if self.n_max < self.levels:
            raise SpecError(range_message("Example", "n_max", self.n_max, self.levels, "inf"))


@pytest.mark.parametrize("kwargs, message", [
    ({"levels": 0}, "Example.levels must be an integer in [1, 32], not 0"),
    ({"levels": True}, "Example.levels must be an integer in [1, 32], not True"),
    ({"levels": "3"}, "Example.levels must be an integer in [1, 32], not '3'"),
    ({"flag": 1}, "Example.flag must be a bool (true or false), not 1"),
    ({"scale": float("nan")}, "Example.scale must be a finite number > 0, not nan"),
    ({"scale": -1.0}, "Example.scale must be a finite number > 0, not -1.0"),
    ({"n_max": 2}, "Example.n_max must be an integer in [4, inf], not 2"),
    ({"bogus": 1}, "unknown key 'bogus' in Example (allowed: levels, n_max, flag, scale)"),
])
def test_spec_messages(kwargs, message):
    with pytest.raises(SpecError) as info:
        Example(**kwargs)
    assert str(info.value) == message


def test_spec_is_a_frozen_dataclass_that_revalidates():
    e = Example(levels=3)
    assert Example.STAGES == 6 and dataclasses.asdict(e)["levels"] == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.levels = 5
    assert dataclasses.replace(e, levels=5).levels == 5
    with pytest.raises(SpecError, match="levels must be an integer"):
        dataclasses.replace(e, levels=99)


def test_from_mapping_names_where():
    with pytest.raises(SpecError, match=r"unknown key 'level' in f.yaml: sec \(allowed: levels"):
        from_mapping(Example, {"level": 1}, where="f.yaml: sec", error=SpecError)
    with pytest.raises(SpecError, match="f.yaml: sec must be a mapping of parameters, not 3"):
        from_mapping(Example, 3, where="f.yaml: sec", error=SpecError)
    assert from_mapping(Example, {"levels": 2}, where="x", error=SpecError).levels == 2


@pytest.mark.parametrize("argv, message", [
    (["--n", "0"], "argument --n: must be an integer >= 1, not '0'"),
    (["--n", "1.5"], "argument --n: must be an integer >= 1, not '1.5'"),
    (["--x", "inf"], "argument --x: must be a finite number > 0, not 'inf'"),
    (["--x", "nan"], "argument --x: must be a finite number > 0, not 'nan'"),
])
def test_option_refuses_before_work(argv, message, capsys):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=option(int, ge=1))
    p.add_argument("--x", type=option(float, gt=0))
    with pytest.raises(SystemExit) as info:
        p.parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


@given(st.dictionaries(st.sampled_from(["levels", "n_max", "flag", "scale", "x"]),
                       st.one_of(st.integers(-5, 40), st.booleans(), st.floats(), st.text(max_size=3), st.none())))
def test_any_mapping_gives_a_spec_or_a_clear_error(data):
    try:
        from_mapping(Example, data, where="fuzz", error=SpecError)
    except SpecError as exc:
        assert str(exc)


def test_read_yaml_names_the_file(tmp_path):
    from common.validate import read_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(SpecError, match=r"preset '.*bad.yaml' is not valid YAML"):
        read_yaml(bad, error=SpecError, what="preset")
    with pytest.raises(SpecError, match=r"cannot read preset '.*missing.yaml'"):
        read_yaml(tmp_path / "missing.yaml", error=SpecError, what="preset")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="is not a text file"):
        read_yaml(binary, error=SpecError, what="preset")
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\n")
    assert read_yaml(good, error=SpecError) == {"a": 1}
