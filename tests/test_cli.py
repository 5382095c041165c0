import pytest

from flows.cli import build_parser, main
from tests.conftest import CONFIGS


@pytest.mark.parametrize("command", ["verilog", "lint", "cosim", "bench", "demo", "train"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out or "--scene" in out


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
