"""Every option of quantize, sweep, search, inr, acaq, compare, grid and demo is refused by argparse before any work.

Each bad input must give exit status 2 and a message naming the option, without starting the flow:
the flow functions are replaced by ones that fail the test, and no run folder may appear.
"""

import time

import pytest
import yaml

from flows.cli import main
from quant.policy import QuantPolicy

BAD = [
    # search
    (["search", "--episodes", "0"], "--episodes", "must be an integer >= 1, not '0'"),
    (["search", "--episodes", "-3"], "--episodes", "not '-3'"),
    (["search", "--episodes", "2.5"], "--episodes", "not '2.5'"),
    (["search", "--budget", "inf"], "--budget", "must be a finite number > 0, not 'inf'"),
    (["search", "--budget", "0"], "--budget", "not '0'"),
    (["search", "--budget", "nan"], "--budget", "not 'nan'"),
    (["search", "--lam", "nan"], "--lam", "must be a finite number >= 0, not 'nan'"),
    (["search", "--lam", "-1"], "--lam", "not '-1'"),
    (["search", "--rays", "0"], "--rays", "must be an integer >= 1, not '0'"),
    (["search", "--warmup", "-1"], "--warmup", "must be an integer >= 0, not '-1'"),
    (["search", "--val-views", "0"], "--val-views", "must be an integer >= 1, not '0'"),
    (["search", "--b-min", "1"], "--b-min", "must be an integer in [2, 32], not '1'"),
    (["search", "--b-max", "33"], "--b-max", "must be an integer in [2, 32], not '33'"),
    (["search", "--b-min", "6", "--b-max", "4"], "--b-min", "must be <= --b-max (4), not 6"),
    (["search", "--seed", "-1"], "--seed", "not '-1'"),
    (["search", "--objective", "fast"], "--objective", "invalid choice: 'fast'"),
    # quantize and sweep
    (["quantize", "--rays", "0"], "--rays", "must be an integer >= 1, not '0'"),
    (["quantize", "--seed", "x"], "--seed", "not 'x'"),
    (["quantize", "--policy", "uniform-1"], "--policy", "bits of policy 'uniform-1' must be an integer in [2, 32], not 1"),
    (["quantize", "--policy", "uniform-x"], "--policy",
     "bits of policy 'uniform-x' must be an integer in [2, 32], not 'x'"),
    (["quantize", "--policy", "nope.yaml"], "--policy", "policy 'nope.yaml': not 'uniform-<bits>', 'fp', nor an existing"),
    (["sweep", "--rays", "-5"], "--rays", "not '-5'"),
    (["sweep", "--bits", "8,x"], "--bits", "must be comma-separated integers in [2, 32], not 'x' (in '8,x')"),
    (["sweep", "--bits", "8,33"], "--bits", "not '33'"),
    (["sweep", "--bits", "1"], "--bits", "not '1'"),
    (["sweep", "--bits", ""], "--bits", "give at least one bitwidth in [2, 32], not ''"),
    (["sweep", "--bits", "8,,4"], "--bits", "not '' (in '8,,4')"),
    (["sweep", "--bits", "8,8"], "--bits", "bitwidth 8 is listed twice"),
    # inr
    (["inr", "--bits", "8,17"], "--bits", "must be comma-separated integers in [2, 16], not '17'"),
    (["inr", "--bits", "8,six"], "--bits", "not 'six'"),
    (["inr", "--bits", ","], "--bits", "give at least one bitwidth in [2, 16]"),
    (["inr", "--size", "4"], "--size", "must be an integer >= 8, not '4'"),
    (["inr", "--steps", "0"], "--steps", "must be an integer >= 1, not '0'"),
    (["inr", "--finetune-steps", "-1"], "--finetune-steps", "must be an integer >= 0, not '-1'"),
    (["inr", "--width", "96"], "--width", "must be a power of two in [2, 128]"),
    (["inr", "--width", "256"], "--width", "must be an integer in [2, 128], not '256'"),
    (["inr", "--width", "0"], "--width", "not '0'"),
    (["inr", "--coord-bits", "1"], "--coord-bits", "must be an integer in [2, 32], not '1'"),
    (["inr", "--coord-bits", "40"], "--coord-bits", "not '40'"),
    (["inr", "--seed", "-2"], "--seed", "not '-2'"),
    (["inr", "--image", "lena"], "--image", "invalid choice: 'lena' (choose from 'astronaut', 'brick', 'camera'"),
    # acaq and acaq-table
    (["acaq", "--mode", "mbl"], "--mode", "invalid choice: 'mbl' (choose from 'mdl', 'mgl')"),
    (["acaq", "--mode", "mgl"], "--target", "mode mgl needs a target"),
    (["acaq", "--mode", "mdl", "--target", "30"], "--target", "mode mdl takes no target"),
    (["acaq", "--mode", "mgl", "--target", "-3"], "--target", "must be a PSNR in dB (>= 1, e.g. 30) or an MSE"),
    (["acaq", "--mode", "mgl", "--target", "inf"], "--target", "not 'inf'"),
    (["acaq", "--eps", "-0.001"], "--eps", "must be a finite number >= 0, not '-0.001'"),
    (["acaq", "--iterations", "0"], "--iterations", "must be an integer >= 1, not '0'"),
    (["acaq-table", "--targets", "30,x"], "--targets", "not 'x'"),
    (["acaq-table", "--iterations", "-1"], "--iterations", "not '-1'"),
    (["search", "--max-loss", "0"], "--max-loss", "must be a finite number > 0, not '0'"),
    (["search", "--max-loss", "nan"], "--max-loss", "not 'nan'"),
    # compare and grid
    (["compare", "--budget", "huge"], "--budget", "invalid choice: 'huge'"),
    (["compare", "--seed", "-2"], "--seed", "not '-2'"),
    (["compare", "--cpus", "0"], "--cpus", "must be an integer >= 1, not '0'"),
    (["grid", "--scenes", "builtin", "--seeds", "0,x"], "--seeds", "not 'x'"),
    (["grid", "--scenes", ","], "--scenes", "give a comma-separated list, not ','"),
    # demo
    (["demo", "--seed", "-1"], "--seed", "must be an integer >= 0, not '-1'"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Every flow fails the test if it starts."""
    import flows.acaq
    import flows.compare
    import flows.demo
    import flows.inr
    import flows.quantize
    import flows.search

    def started(*args, **kwargs):
        pytest.fail("the flow started despite a bad option")

    for module, name in ((flows.search, "search"), (flows.quantize, "quantize"), (flows.quantize, "sweep"),
                         (flows.inr, "inr"), (flows.demo, "demo"), (flows.acaq, "acaq_run"),
                         (flows.acaq, "acaq_table"), (flows.compare, "compare"), (flows.compare, "grid")):
        monkeypatch.setattr(module, name, started)


def _run(argv, tmp_path):
    t0 = time.perf_counter()
    try:
        code = main(["--runs", str(tmp_path / "runs"), "--build", str(tmp_path / "build"), *argv])
    except SystemExit as exc:
        code = exc.code
    return code, time.perf_counter() - t0


@pytest.mark.parametrize("argv, option, message", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_option_is_refused_before_work(argv, option, message, tmp_path, capsys, no_work):
    code, seconds = _run(argv, tmp_path)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"argument {option}:" in err and message in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "build").exists()
    assert seconds < 5, f"took {seconds:.1f} s: work started before the check"


def _policy_file(tmp_path, data):
    path = tmp_path / "policy.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("data, message", [
    ({**QuantPolicy.uniform(8, 4), "color.l1.weight": 1},
     "bits of 'color.l1.weight' must be an integer in [2, 32], not 1"),
    ({**QuantPolicy.uniform(8, 4), "density.l2.weight": 8}, "unknown component 'density.l2.weight'"),
    ({k: v for k, v in QuantPolicy.uniform(8, 4).items() if k != "sh.out"}, "missing components: sh.out"),
    ("enc.out: [8\n", "is not valid YAML"),
    ("- 8\n", "a policy must be a mapping of component -> bits, not list"),
])
def test_a_policy_file_that_fails_validation_is_refused_before_work(data, message, tmp_path, capsys, no_work):
    path = _policy_file(tmp_path, data)
    code, _ = _run(["quantize", "--policy", str(path)], tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and "argument --policy:" in err and message in err and "policy.yaml" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv", [["search", "--b-min", "4", "--b-max", "4", "--budget", "2", "--lam", "0"],
                                  ["sweep", "--bits", "32,2"], ["inr", "--width", "128", "--finetune-steps", "0"],
                                  ["quantize", "--policy", "fp"], ["quantize", "--policy", "uniform-32"]])
def test_good_options_reach_the_flow(argv, tmp_path, monkeypatch):
    """The checks refuse only what is wrong: valid edge values get through to the flow."""
    import flows.inr
    import flows.quantize
    import flows.search

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    for module, name in ((flows.search, "search"), (flows.quantize, "quantize"), (flows.quantize, "sweep"),
                         (flows.inr, "inr")):
        monkeypatch.setattr(module, name, reached)
    with pytest.raises(Reached):
        main(["--runs", str(tmp_path / "runs"), *argv])


def test_a_valid_policy_file_gets_through(tmp_path, monkeypatch):
    import flows.quantize

    seen = {}

    def quantize(scene, preset, policy, **kwargs):
        seen["policy"] = policy
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(flows.quantize, "quantize", quantize)
    path = _policy_file(tmp_path, dict(QuantPolicy.uniform(6, 4)))
    assert main(["--runs", str(tmp_path / "runs"), "quantize", "--policy", str(path)]) == 2
    assert seen["policy"] == str(path)
