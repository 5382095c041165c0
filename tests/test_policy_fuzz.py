"""Fuzzing the policy loader: any YAML text, any mapping, gives a QuantPolicy or a PolicyError."""

import tempfile
from pathlib import Path

import yaml
from hypothesis import given, strategies as st

from quant.policy import PolicyError, QuantPolicy, component_names

NAMES = component_names(4)
VALUES = st.one_of(st.integers(-40, 80), st.booleans(), st.floats(allow_nan=True), st.text(max_size=4), st.none(),
                   st.lists(st.integers(2, 8), max_size=2))
LEVELS = st.one_of(st.integers(-2, 40), st.just(4), st.booleans(), st.floats(0, 8), st.text(max_size=2))


def _load_text(text: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(text)
        return QuantPolicy.load(path, 4), path


@given(st.text(max_size=200))
def test_any_yaml_text_loads_or_names_the_file(text):
    try:
        policy, _ = _load_text(text)
    except PolicyError as exc:
        assert "policy.yaml" in str(exc)
    else:
        assert list(policy) == NAMES


@given(st.lists(st.sampled_from(NAMES + ["x", "hash.level04", "enc.out "]), max_size=25),
       st.lists(VALUES, min_size=25, max_size=25))
def test_any_yaml_mapping_loads_or_names_the_file(keys, values):
    text = yaml.safe_dump(dict(zip(keys, values)))
    try:
        policy, _ = _load_text(text)
    except PolicyError as exc:
        assert "policy.yaml" in str(exc)
    else:
        assert all(2 <= b <= 32 and type(b) is int for b in policy.values())


@given(st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=6), st.integers(), st.none()), VALUES,
                       max_size=20), LEVELS)
def test_any_mapping_gives_a_policy_or_a_policy_error(data, levels):
    try:
        QuantPolicy.from_dict(data, levels)
    except PolicyError as exc:
        assert str(exc)


@given(st.sampled_from(NAMES), VALUES)
def test_one_bad_value_is_named(name, value):
    data = {**QuantPolicy.uniform(8, 4), name: value}
    try:
        policy = QuantPolicy.from_dict(data, 4)
    except PolicyError as exc:
        assert f"bits of {name!r} must be an integer in [2, 32], not {value!r}" == str(exc)
    else:
        assert policy[name] == value and type(value) is int and 2 <= value <= 32
