"""quant.entropy: the learned factorized prior, range coding with constriction, the bitstream container."""

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from quant.entropy import (
    MAGIC,
    BitstreamError,
    FactorizedPrior,
    decode_bits,
    decode_symbols,
    deserialize_tables,
    empirical_table,
    encode_bits,
    encode_symbols,
    fit_prior,
    from_bytes,
    pack_channels,
    read_bitstream,
    serialize_tables,
    table_from_probabilities,
    to_bytes,
    unpack_channels,
    write_bitstream,
)


def laplace_symbols(scales=(1.0, 3.0, 8.0), n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return [np.round(rng.laplace(0.0, s, n)).astype(np.int64) for s in scales]


def test_prior_likelihood_is_a_probability_mass_per_channel():
    torch.manual_seed(0)
    prior = FactorizedPrior(2)
    grid = torch.arange(-400, 401, dtype=torch.float32).repeat(2, 1)
    mass = prior.likelihood(grid)
    assert mass.shape == (2, 801) and bool((mass >= 1e-9).all())
    # the masses of consecutive unit intervals tile the line: they sum to the whole cumulative, ~1
    assert mass.sum(1).tolist() == pytest.approx([1.0, 1.0], abs=1e-3)
    y = torch.zeros(2, 5, 3, requires_grad=True)  # any (C, ...) shape; differentiable in y
    prior.bits(y).backward()
    assert y.grad is not None and y.grad.shape == (2, 5, 3)
    assert prior.likelihood(y).shape == (2, 15)
    with pytest.raises(ValueError, match=r"shape \(C, \.\.\.\) with C = 2 channels, not \(3, 4\)"):
        prior.likelihood(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="channels must be an int >= 1, not 0"):
        FactorizedPrior(0)


def test_bits_mask_selects_and_weights_entries():
    torch.manual_seed(0)
    prior = FactorizedPrior(1).requires_grad_(False)
    y = torch.tensor([[0.0, 3.0, -7.0]])
    per = -torch.log2(prior.likelihood(y))[0]
    assert float(prior.bits(y, torch.tensor([[True, False, True]]))) == pytest.approx(float(per[0] + per[2]))
    assert float(prior.bits(y, torch.tensor([[0.5, 1.0, 0.0]]))) == pytest.approx(float(0.5 * per[0] + per[1]))
    with pytest.raises(ValueError, match=r"mask must have y's shape \(1, 3\)"):
        prior.bits(y, torch.ones(1, 2))
    assert torch.equal(prior.quantize(torch.tensor([0.4, 1.6, -2.5])), torch.tensor([0.0, 2.0, -2.0]))
    noisy = prior.noisy(torch.zeros(1000))
    assert float(noisy.abs().max()) <= 0.5 and float(noisy.std()) > 0.2


def test_tables_sum_to_the_precision_with_every_symbol_codable():
    t = table_from_probabilities(np.array([0.0, 1e-12, 0.5, 0.5]), precision=8)
    assert t.dtype == np.uint32 and int(t.sum()) == 256 and int(t.min()) >= 1
    torch.manual_seed(0)
    tables = FactorizedPrior(2).pmf_table(np.array([-20, 0]), np.array([20, 3]), precision=12)
    assert [len(t) for t in tables] == [41, 4] and all(int(t.sum()) == 4096 and t.min() >= 1 for t in tables)
    with pytest.raises(ValueError, match="do not fit a table of precision 4"):
        FactorizedPrior(1).pmf_table(np.array([0]), np.array([16]), precision=4)
    with pytest.raises(ValueError, match="channel 0: lo 3 > hi 2"):
        FactorizedPrior(1).pmf_table(np.array([3]), np.array([2]))
    for precision, want in ((12, tables), (20, [t << 8 for t in tables])):  # 16-bit and 32-bit storage
        got = deserialize_tables(serialize_tables(want, precision), [41, 4], precision)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_symbols_round_trip_exactly_in_several_channels():
    symbols = laplace_symbols()
    data, meta = pack_channels(symbols)  # empirical tables
    assert all(np.array_equal(a, b) for a, b in zip(unpack_channels(data, meta), symbols))
    tables = [empirical_table(s, s.min(), s.max()) for s in symbols]
    lo = [int(s.min()) for s in symbols]
    back = decode_symbols(encode_symbols(np.stack(symbols), lo, tables), lo, tables, [s.size for s in symbols])
    assert all(np.array_equal(a, b) and a.dtype == np.int64 for a, b in zip(back, symbols))


def test_coded_size_matches_the_fitted_prior_and_beats_an_unfitted_one():
    symbols = laplace_symbols()
    prior = fit_prior(symbols, steps=300)
    y = torch.from_numpy(np.stack(symbols)).float()
    estimate = float(prior.bits(y).detach())
    data, meta = pack_channels(symbols, prior)
    assert all(np.array_equal(a, b) for a, b in zip(unpack_channels(data, meta), symbols))
    assert 8 * len(data) == pytest.approx(estimate, rel=0.02)
    # the ideal code length of these samples (their empirical entropy): the fit comes within 1 %
    entropy = sum(-(c * np.log2(c / c.sum())).sum() for c in (np.unique(s, return_counts=True)[1] for s in symbols))
    assert estimate < 1.01 * entropy
    torch.manual_seed(0)
    unfitted = FactorizedPrior(3)
    assert len(pack_channels(symbols, unfitted)[0]) > 1.1 * len(data)


def test_out_of_range_symbols_and_bad_tables_are_named():
    table = np.array([1, 2, 5], np.uint32)
    with pytest.raises(ValueError, match=r"channel 1: symbol 7 at position 2 is outside the table's range \[4, 6\]"):
        encode_symbols([np.array([0, 1]), np.array([4, 5, 7])], [0, 4], [table, table])
    with pytest.raises(ValueError, match="symbols have 1 channels, the tables 2"):
        encode_symbols([np.array([0])], [0, 0], [table, table])
    with pytest.raises(ValueError, match="whole number of 4-byte words, not 5 bytes"):
        decode_symbols(b"12345", [0], [table], [1])
    with pytest.raises(ValueError, match="frequency table 0 does not sum to 2\\*\\*16"):
        deserialize_tables(serialize_tables([np.array([3, 4], np.uint32)], 16), [2], 16)


def test_bit_masks_round_trip_at_their_entropy():
    rng = np.random.default_rng(1)
    for p in (0.0, 0.05, 0.5, 1.0):
        bits = rng.random(20000) < p
        data = encode_bits(bits)
        assert np.array_equal(decode_bits(data, bits.size), bits)
        h = 0.0 if p in (0.0, 1.0) else -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
        assert 8 * len(data) <= 1.02 * h * bits.size + 64
    with pytest.raises(ValueError, match="bits must be bool or 0/1 integers"):
        encode_bits(np.array([0, 2]))


# --- the container ---------------------------------------------------------------------------------

SECTIONS = {"codes": bytes(range(200)), "tables": b"xyz", "empty": b""}


def test_container_round_trips_and_writes_atomically(tmp_path):
    path = tmp_path / "scene.nhwb"
    size = write_bitstream(path, "ngp-tables", {"arch": {"levels": 4}, "note": "é"}, SECTIONS)
    assert size == path.stat().st_size and path.read_bytes()[:4] == MAGIC
    header, sections = read_bitstream(path, "ngp-tables")
    assert header == {"arch": {"levels": 4}, "note": "é"} and sections == SECTIONS
    assert list(sections) == list(SECTIONS)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.nhwb"]


def test_container_defects_raise_bitstream_errors_naming_the_file(tmp_path):
    blob = to_bytes("ngp-tables", {"a": 1}, SECTIONS)
    path = tmp_path / "f.nhwb"

    def error(data, kind="ngp-tables"):
        path.write_bytes(data)
        with pytest.raises(BitstreamError) as info:
            read_bitstream(path, kind)
        assert str(path) in str(info.value)
        return str(info.value)

    assert f"truncated: {len(blob) - 10} bytes, header says {len(blob)}" in error(blob[:-10])
    assert "truncated" in error(blob[:12])
    flipped = bytearray(blob)
    flipped[40] ^= 0x10
    assert "checksum mismatch" in error(bytes(flipped))
    assert "not a nerfhw bitstream (magic b'PK\\x03\\x04'" in error(b"PK\x03\x04" + blob[4:])
    future = bytearray(blob)
    future[4:6] = struct.pack("<H", 7)
    assert "version 7 not supported" in error(bytes(future))
    assert "kind 'ngp-tables' expected, file holds 'tensorf-ectensorf'" in error(
        to_bytes("tensorf-ectensorf", {}, SECTIONS))
    assert "3 trailing bytes" in error(blob + b"abc")
    with pytest.raises(BitstreamError, match="cannot read bitstream"):
        read_bitstream(tmp_path / "missing.nhwb")


def _framed(header_json: bytes, payload: bytes = b"") -> bytes:
    """A well-framed, correctly checksummed buffer around an arbitrary JSON header."""
    total = 18 + len(header_json) + len(payload) + 4
    body = struct.pack("<4sHQI", MAGIC, 1, total, len(header_json)) + header_json + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_malformed_headers_behind_a_valid_checksum_are_rejected():
    with pytest.raises(BitstreamError, match="malformed JSON header"):
        from_bytes(_framed(b"{not json"))
    with pytest.raises(BitstreamError, match="sections list 5 bytes, the file holds 2"):
        from_bytes(_framed(b'{"kind":"k","version":1,"sections":[["a",5]],"header":{}}', b"ab"))
    with pytest.raises(BitstreamError, match="duplicate section names"):
        from_bytes(_framed(b'{"kind":"k","version":1,"sections":[["a",1],["a",1]],"header":{}}', b"ab"))
    assert from_bytes(_framed(b'{"kind":"k","version":1,"sections":[["a",2]],"header":{}}', b"ab")) == (
        {}, {"a": b"ab"})


VALID = to_bytes("ngp-tables", {"levels": [1, 2, 3]}, SECTIONS)


@settings(max_examples=50)
@given(st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda b: MAGIC + b),
    st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)).map(
        lambda t: VALID[:t[0]] + bytes([VALID[t[0]] ^ t[1]]) + VALID[t[0] + 1:]),
    st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n]),
    st.binary(max_size=80).map(_framed),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                 max_leaves=8).map(lambda v: _framed(__import__("json").dumps(
                     {"kind": "k", "version": 1, "sections": v, "header": {}}).encode())),
))
def test_from_bytes_raises_only_bitstream_errors(data):
    try:
        header, sections = from_bytes(data)
    except BitstreamError:
        return
    assert isinstance(header, dict) and all(isinstance(v, bytes) for v in sections.values())
