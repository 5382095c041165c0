"""hw.registry: one record per engine, and everything that loops over it."""

import subprocess
import sys

import pytest

from hw.registry import ENGINES, Engine, engine_of
from tests.conftest import CONFIGS, ROOT


def test_importing_the_registry_and_params_is_light():
    code = ("import sys, hw.registry, hw.params, hw.hash_encoder, hw.mlp_engine, hw.hadamard; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'amaranth', 'cocotb', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ENGINES)
def test_every_record_resolves(name):
    engine = ENGINES[name]
    assert isinstance(engine, Engine) and engine.section == name == engine.params.SECTION
    component = engine.load("component")
    assert component.__module__ == f"hw.{name}.rtl"
    assert engine.load("tlm").__module__ == f"sim.tlm.{name}"
    params = engine.params()
    assert engine.load("header")(params).startswith("// ") and engine.load("size")(params) > 0
    assert engine_of(params) is engine
    workload = engine.load("workload")(params, points=10, vectors=6, phases=None, shapes=None)
    assert workload and all(isinstance(k, str) for k in workload)
    assert engine.testbench == f"sim.cosim.tb_{name}"


def test_every_preset_section_is_a_registered_engine():
    import yaml

    sections = {s for p in CONFIGS.glob("*.yaml") for s in yaml.safe_load(p.read_text())}
    assert sections <= ENGINES.keys() and sections == set(ENGINES)


def test_unknown_params_have_no_engine():
    with pytest.raises(TypeError, match="no engine for parameters"):
        engine_of({"levels": 4})


def test_params_line_round_trips_list_values(tmp_path):
    from hw.config import params_line
    from hw.hash_encoder_axi.params import HashEncoderAxiParams
    from hw.registry import read_params_line

    p = HashEncoderAxiParams(levels=4, log2_table_size=8, feature_bits=8, n_min=2, n_max=16, lanes=2,
                             level_bits=(6, 3, 2, 2))
    path = tmp_path / "x.v"
    path.write_text(params_line("hash_encoder_axi", p) + "\n")
    section, values = read_params_line(path)
    assert section == "hash_encoder_axi" and values == {k: str(v) for k, v in p.to_dict().items()}
    assert values["level_bits"] == "[6, 3, 2, 2]"
