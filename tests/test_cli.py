import pytest

from flows.cli import build_parser, main
from tests.conftest import CONFIGS


@pytest.mark.parametrize("command,option", [("verilog", "--policy"), ("lint", "--config"), ("cosim", "--config"),
                                            ("bench", "--config"), ("demo", "--seed"), ("train", "--scene"),
                                            ("quantize", "--policy"), ("sweep", "--bits"), ("search", "--budget")])
def test_every_command_has_help(command, option, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert option in capsys.readouterr().out


def test_verilog_of_a_policy_needs_the_search_folder(tmp_path, capsys):
    from quant.policy import QuantPolicy

    QuantPolicy.uniform(6, 4).save(tmp_path / "policy.yaml")
    assert main(["--build", str(tmp_path), "verilog", "--policy", str(tmp_path / "policy.yaml")]) == 2
    assert "engines.yaml: missing; `make verilog POLICY=` takes the policy.yaml of a `make search` run" in \
        capsys.readouterr().err


def test_verilog_command_writes_named_file(tmp_path, capsys):
    assert main(["--build", str(tmp_path), "verilog", "--config", str(CONFIGS / "edge.yaml")]) == 0
    assert (tmp_path / "verilog" / "edge" / "hash_encoder.v").read_text().startswith("// hash_encoder generated")


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hash_encoder:\n  log2_table_size: 2\n")
    assert main(["--build", str(tmp_path), "verilog", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: HashEncoderParams.log2_table_size must be an integer in [4, 24], not 2" in err


def test_train_command_rejects_unknown_preset(tmp_path, capsys):
    assert main(["--runs", str(tmp_path), "train", "--preset", "huge"]) == 2
    assert "unknown preset 'huge' (allowed: tiny, small, full)" in capsys.readouterr().err
