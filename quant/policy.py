"""Quantization policy: the ordered list of quantized components and their bitwidths.

Torch-free (stdlib + PyYAML only), so that ``rl/``, ``sim/`` and the flows can read and write policies
without importing the model.

Components
----------
Every tensor that the quantized model quantizes is exactly one component; a layer input that is
already another component's output is not listed again (the density MLP's input is ``enc.out``; the
colour MLP's input is the concatenation of ``density.l1.out[:, 1:]`` and ``sh.out``). The model is the
Instant-NGP network of the A-CAQ reference code: hash grid with L levels of F = 2 features, density
MLP 32 -> 64 -> 16 and colour MLP (15 + 16) -> 64 -> 64 -> 3, ReLU hidden layers, no biases.
N is the number of samples; T_l <= T the rows of level l's table. All tensors are float32.

Naming: ``<mlp>.l<i>.weight`` is layer i's weight, shape (out, in); ``<mlp>.l<i>.act_in`` its input
activation (a ReLU output); ``<mlp>.l<i>.out`` its raw output; ``<mlp>.out`` the activated output.

component           scheme      tensor, shape                                   A-CAQ reference: bit index, module
hash.level{l:02d}   asymmetric  level l's table entries, (T_l, F)               1   qencoder.qw (one for all levels)
enc.out             asymmetric  interpolated features, (N, L*F) = (N, 32)       0   qencoder.qo
density.l0.weight   symmetric   (64, L*F)                                       3   Qsigma_net.0.qw
density.l1.act_in   unsigned    hidden ReLU output, (N, 64)                     4   Qsigma_net.1.qo
density.l1.weight   symmetric   (16, 64)                                        6   Qsigma_net.2.qw
density.l1.out      asymmetric  raw output, (N, 16): [:, 0] density logit,      5   Qsigma_net.2.qo
                                [:, 1:] the 15 geometry features
density.out         unsigned    trunc_exp(density.l1.out[:, 0]), (N,)           2   Qsigma_act.qo
sh.out              asymmetric  SH degree-4 view encoding, (N, 16)              7   qencoder_dir.qo
color.l0.weight     symmetric   (64, 31)                                        10  Qcolor_net.0.qw
color.l1.act_in     unsigned    hidden ReLU output, (N, 64)                     11  Qcolor_net.1.qo
color.l1.weight     symmetric   (64, 64)                                        12  Qcolor_net.2.qw
color.l2.act_in     unsigned    hidden ReLU output, (N, 64)                     13  Qcolor_net.3.qo
color.l2.weight     symmetric   (3, 64)                                         14  Qcolor_net.4.qw
color.l2.out        asymmetric  rgb logits before the sigmoid, (N, 3)           8   Qcolor_act.qi
color.out           asymmetric  sigmoid rgb in (0, 1), (N, 3)                   9   Qcolor_act.qo

So ``component_names(L)`` has L + 14 entries: A-CAQ's 15 components (the bit list of ``manual_bit``
in ``nerf/network.py`` of github.com/WeihangLiu2024/Content_Aware_NeRF) one-to-one, except that the
hash table, one component there, is split into one component per level here (the hash engine can
store each level at its own width). The order here is data-flow order, not A-CAQ's index order.

Schemes (A-CAQ, Liu et al. ECCV 2024, Table 2): weights signed symmetric; ReLU and exp outputs
unsigned; hash-table entries and every other activation asymmetric with a learned offset. The
sigmoid output is "other" (asymmetric), as in the reference code.

Bitwidths
---------
A bitwidth is an int in [2, 32]; 32 means full precision (float32, no quantizer). FQR is the plain
mean of the bitwidths over the components (A-CAQ's "FQR"); note that with the hash table split per
level it weighs the table L times, where A-CAQ counts it once (uniform policies give the same FQR).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import yaml
from pydantic import Field

from common.atomic import atomic_write_text
from common.validate import checker, read_yaml

__all__ = [
    "SCHEMES",
    "MIN_BITS",
    "MAX_BITS",
    "FULL_PRECISION_BITS",
    "MAX_LEVELS",
    "PolicyError",
    "Bits",
    "check_bits",
    "component_names",
    "scheme_of",
    "QuantPolicy",
    "KiloPolicy",
    "KILONERF_COMPONENTS",
    "fqr",
]

#: The three quantization schemes of A-CAQ Table 2 (see ``quant.quantizers`` for the formulas).
SCHEMES: tuple[str, ...] = ("symmetric", "unsigned", "asymmetric")
MIN_BITS = 2
MAX_BITS = 32
#: A component at this bitwidth is not quantized (float32).
FULL_PRECISION_BITS = 32
#: Hash-grid levels a component list can have (the hash engine's range, ``HashEncoderParams.levels``).
MAX_LEVELS = 32

#: The components after the hash levels, in data-flow order, with their scheme.
_FIXED: tuple[tuple[str, str], ...] = (
    ("enc.out", "asymmetric"),
    ("density.l0.weight", "symmetric"),
    ("density.l1.act_in", "unsigned"),
    ("density.l1.weight", "symmetric"),
    ("density.l1.out", "asymmetric"),
    ("density.out", "unsigned"),
    ("sh.out", "asymmetric"),
    ("color.l0.weight", "symmetric"),
    ("color.l1.act_in", "unsigned"),
    ("color.l1.weight", "symmetric"),
    ("color.l2.act_in", "unsigned"),
    ("color.l2.weight", "symmetric"),
    ("color.l2.out", "asymmetric"),
    ("color.out", "asymmetric"),
)
#: KiloNeRF's components (``nerf.kilonerf``), in data-flow order, with their scheme; one quantizer per
#: component is shared by every tiny network. Biases stay at full precision (the MLP engine adds them at
#: its accumulator width).
KILONERF_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("pe.out", "asymmetric"),
    ("density.l0.weight", "symmetric"),
    ("density.l1.act_in", "unsigned"),
    ("density.l1.weight", "symmetric"),
    ("density.l2.act_in", "unsigned"),
    ("density.l2.weight", "symmetric"),
    ("density.l2.out", "asymmetric"),
    ("density.out", "unsigned"),
    ("dir.out", "asymmetric"),
    ("color.l0.weight", "symmetric"),
    ("color.l1.act_in", "unsigned"),
    ("color.l1.weight", "symmetric"),
    ("color.l1.out", "asymmetric"),
    ("color.out", "asymmetric"),
)
_FIXED_SCHEME = MappingProxyType({**dict(KILONERF_COMPONENTS), **dict(_FIXED)})  # shared names: same scheme
_HASH_LEVEL = re.compile(r"hash\.level(\d\d)")


class PolicyError(ValueError):
    """A policy or policy file is invalid; the message names the file, the component and the value."""


#: A bitwidth: an int in [2, 32] (32: full precision).
Bits = Annotated[int, Field(ge=MIN_BITS, le=MAX_BITS)]
_check_bits = checker(Bits)
_check_levels = checker(Annotated[int, Field(ge=1, le=MAX_LEVELS)], error=PolicyError)


def check_bits(bits: Any, what: str = "bits") -> int:
    """Return ``bits`` if it is an int in [2, 32] (bool excluded); else raise ValueError naming ``what`` and it."""
    return _check_bits(bits, what)


def component_names(levels: int) -> list[str]:
    """The quantized components of a model with ``levels`` hash levels, in the fixed order (module doc).

    Returns ``levels + 14`` names: ``hash.level00`` .. ``hash.level{levels-1:02d}``, then ``enc.out``
    .. ``color.out``. Raises PolicyError unless ``levels`` is an int in [1, 32].
    """
    return [f"hash.level{l:02d}" for l in range(_check_levels(levels, "levels"))] + [name for name, _ in _FIXED]


def scheme_of(name: str) -> str:
    """The quantization scheme of a component: "symmetric", "unsigned" or "asymmetric" (A-CAQ Table 2).

    Raises PolicyError for a name that is no component of any level count.
    """
    m = _HASH_LEVEL.fullmatch(name) if isinstance(name, str) else None
    if m and int(m.group(1)) < MAX_LEVELS:
        return "asymmetric"
    try:
        return _FIXED_SCHEME[name]
    except (KeyError, TypeError):
        raise PolicyError(f"unknown component {name!r}") from None


def _summary(levels: int) -> str:
    hashed = "hash.level00" if levels == 1 else f"hash.level00..hash.level{levels - 1:02d}"
    return ", ".join([hashed] + [name for name, _ in _FIXED])


class QuantPolicy(Mapping[str, int]):
    """An immutable mapping component -> bits for every component of ``component_names(levels)``.

    Iteration follows the component order, whatever the order of the input. Bits are ints in [2, 32];
    32 means full precision. Compare with ``==`` (same components and bits).

    Args:
        bits: component -> bits, exactly the components of ``component_names(levels)``.
        levels: hash-grid levels L, in [1, 32].
        source: a file name to put in front of error messages.

    Raises:
        PolicyError: ``bits`` is not a mapping; it names an unknown component (the error names it);
            components are missing (the error lists them); a bitwidth is not an int in [2, 32] (the
            error names the component and the value).
    """

    __slots__ = ("_bits", "_levels")

    def __init__(self, bits: Mapping[str, int], levels: int, *, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        names = self._names(levels)
        if not isinstance(bits, Mapping):
            raise PolicyError(f"{where}a policy must be a mapping of component -> bits, not {type(bits).__name__}")
        known = set(names)
        unknown = [k for k in bits if k not in known]
        if unknown:
            label = "component" if len(unknown) == 1 else "components"
            raise PolicyError(f"{where}unknown {label} {', '.join(map(repr, unknown))} ({self._other_family(bits)}"
                              f"{self._describe(levels)})")
        missing = [n for n in names if n not in bits]
        if missing:
            raise PolicyError(f"{where}missing components: {', '.join(missing)}")
        try:
            self._bits = MappingProxyType({n: check_bits(bits[n], f"bits of {n!r}") for n in names})
        except ValueError as exc:
            raise PolicyError(f"{where}{exc}") from None
        self._levels = levels

    @staticmethod
    def _names(levels: int) -> list[str]:
        return component_names(levels)

    @staticmethod
    def _describe(levels: int) -> str:
        return f"a policy for {levels} hash levels has: {_summary(levels)}"

    @staticmethod
    def _other_family(bits: Mapping) -> str:
        kilo_only = dict(KILONERF_COMPONENTS).keys() - dict(_FIXED).keys()
        if any(k in kilo_only for k in bits):
            return "this is a KiloNeRF policy, the model is an Instant-NGP field; "
        return ""

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, bits: int, levels: int) -> QuantPolicy:
        """Every component at ``bits``."""
        return cls(dict.fromkeys(cls._names(levels), bits), levels)

    @classmethod
    def from_dict(cls, d: Mapping[str, int], levels: int, *, source: str | None = None) -> QuantPolicy:
        """Validate ``d`` (see the class doc) and build the policy."""
        return cls(d, levels, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike, levels: int | None = None) -> QuantPolicy:
        """Read a YAML policy file: a flat mapping ``component: bits``.

        ``levels`` None: as many hash levels as the file has ``hash.levelNN`` entries (at least 1), for
        checking a file before the model it is for is loaded.

        Raises:
            PolicyError: unreadable file, invalid YAML, or an invalid policy; the message names the file.
        """
        path = Path(path)
        raw = read_yaml(path, error=PolicyError, what="policy")
        if levels is None:
            keys = raw if isinstance(raw, Mapping) else ()
            levels = min(MAX_LEVELS, max(1, sum(1 for k in keys if isinstance(k, str) and _HASH_LEVEL.fullmatch(k))))
        return cls(raw, levels, source=str(path))

    def save(self, path: str | os.PathLike) -> None:
        """Write the policy as YAML in component order, atomically (temporary file + ``os.replace``)."""
        text = "# quantization policy: component -> bits (32 = full precision)\n"
        text += yaml.safe_dump(dict(self._bits), sort_keys=False)
        atomic_write_text(path, text)

    def replace(self, changes: Mapping[str, int]) -> QuantPolicy:
        """A copy with the bits of some components changed (validated like the constructor)."""
        return type(self)({**self._bits, **changes}, self._levels)

    # --- mapping ------------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        """Hash-grid levels L the policy is for."""
        return self._levels

    def __getitem__(self, name: str) -> int:
        return self._bits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._bits)

    def __len__(self) -> int:
        return len(self._bits)

    def to_dict(self) -> dict[str, int]:
        """A plain dict component -> bits, in component order."""
        return dict(self._bits)

    def __repr__(self) -> str:
        return f"QuantPolicy(levels={self._levels}, fqr={fqr(self):.3g}, bits={dict(self._bits)})"


class KiloPolicy(QuantPolicy):
    """A KiloNeRF policy: component -> bits for exactly the ``KILONERF_COMPONENTS`` (``levels`` is 0).

    Raises:
        PolicyError: as ``QuantPolicy``; a policy of the Instant-NGP family (``hash.levelNN``, ``enc.out``,
            ``sh.out`` ...) is named as such.
    """

    __slots__ = ()

    def __init__(self, bits: Mapping[str, int], levels: int = 0, *, source: str | None = None) -> None:
        super().__init__(bits, 0, source=source)

    @staticmethod
    def _names(levels: int) -> list[str]:
        return [name for name, _ in KILONERF_COMPONENTS]

    @staticmethod
    def _describe(levels: int) -> str:
        return "a KiloNeRF policy has: " + ", ".join(name for name, _ in KILONERF_COMPONENTS)

    @staticmethod
    def _other_family(bits: Mapping) -> str:
        if any(isinstance(k, str) and (_HASH_LEVEL.fullmatch(k) or k in ("enc.out", "sh.out")) for k in bits):
            return "this is an Instant-NGP policy, the model is KiloNeRF; "
        return ""

    @classmethod
    def uniform(cls, bits: int, levels: int = 0) -> "KiloPolicy":
        return cls(dict.fromkeys(cls._names(0), bits))

    @classmethod
    def load(cls, path: str | os.PathLike, levels: int | None = None) -> "KiloPolicy":
        path = Path(path)
        return cls(read_yaml(path, error=PolicyError, what="policy"), source=str(path))

    def replace(self, changes: Mapping[str, int]) -> "KiloPolicy":
        return type(self)({**self.to_dict(), **changes})

    def __repr__(self) -> str:
        return f"KiloPolicy(fqr={fqr(self):.3g}, bits={self.to_dict()})"


def fqr(policy: Mapping[str, int]) -> float:
    """FQR: the plain mean bitwidth over the components of ``policy`` (A-CAQ); see the module doc."""
    if not policy:
        raise PolicyError("FQR of an empty policy")
    return sum(policy.values()) / len(policy)
