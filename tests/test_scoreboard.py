from sim.cosim.scoreboard import Scoreboard


def test_clean_run_has_no_mismatch():
    sb = Scoreboard("o", [(3, 10), (5, 11)])
    sb.check(3, 10)
    sb.check(5, 11)
    assert sb.finish() == []


def test_cycle_payload_missing_and_unexpected_are_each_reported():
    sb = Scoreboard("o", [(3, 10), (5, 11), (6, 12)])
    sb.check(4, 10)  # one cycle late
    sb.check(5, 13)  # wrong payload
    kinds = [m.kind for m in sb.finish()]
    assert kinds == ["cycle", "payload", "missing"]
    sb2 = Scoreboard("o", [(1, 1)])
    sb2.check(1, 1)
    sb2.check(2, 2)
    assert [m.kind for m in sb2.finish()] == ["unexpected"]
