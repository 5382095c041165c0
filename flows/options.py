"""argparse option types of the quantize, sweep, search, inr and demo commands, and their cross-option rules.

Each type refuses a bad value with ``argparse.ArgumentTypeError``, so argparse names the option, gives
the rule and the value, and exits with status 2 before the command starts (``common.validate.option``
for the plain ranges). ``check_search`` holds the rules between options, run right after parsing.
"""

from __future__ import annotations

import argparse
from common.validate import option

__all__ = ["bits_list", "choice_list", "width", "policy_spec", "check_search", "check_acaq", "check_quantizer_options"]


def choice_list(choices, what: str):
    """argparse ``type=``: comma-separated distinct names of ``choices`` -> tuple (``flows.inr.methods.parse_choices``)."""

    def parse(text: str) -> tuple[str, ...]:
        from flows.inr.methods import parse_choices

        try:
            return parse_choices(text, choices, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = f"{what} names"
    return parse


def bits_list(lo: int, hi: int):
    """argparse ``type=``: comma-separated distinct bitwidths in [lo, hi], at least one -> tuple of ints."""

    def parse(text: str) -> tuple[int, ...]:
        check = option(int, ge=lo, le=hi)
        items = [t.strip() for t in text.split(",")]
        if not any(items):
            raise argparse.ArgumentTypeError(f"give at least one bitwidth in [{lo}, {hi}], not {text!r}")
        bits: list[int] = []
        for item in items:
            try:
                value = check(item)
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(f"must be comma-separated integers in [{lo}, {hi}], not {item!r} "
                                                 f"(in {text!r})") from None
            if value in bits:
                raise argparse.ArgumentTypeError(f"bitwidth {value} is listed twice (in {text!r})")
            bits.append(value)
        return tuple(bits)

    parse.__name__ = f"bitwidths in [{lo}, {hi}]"
    return parse


def width(text: str) -> int:
    """argparse ``type=``: a power of two in [2, 128] (the Hadamard datapath's sizes)."""
    value = option(int, ge=2, le=128)(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two in [2, 128] (the Hadamard datapath's sizes), "
                                         f"not {text!r}")
    return value


def policy_spec(text: str) -> str:
    """argparse ``type=``: ``fp``, ``uniform-<B>`` (B in [2, 32]) or a policy YAML file that validates.

    The same parsing as ``flows.quantize.resolve_policy`` (a file is checked for its own levels; the
    trained model's levels are checked once it is loaded).
    """
    from flows.quantize import resolve_policy

    try:
        resolve_policy(text, None)
    except (ValueError, FileNotFoundError) as exc:  # PolicyError is a ValueError
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def check_quantizer_options(args) -> str | None:
    """Cross-option rules of the quantizer options (quantize, search): --placement and --calibration are DHQ's."""
    if getattr(args, "quantizer", "uniform") == "uniform":
        for option in ("placement", "calibration"):
            if getattr(args, option, None) is not None:
                return f"argument --{option}: an option of --quantizer dhq, not uniform ({getattr(args, option)!r})"
    return None


def check_search(args) -> str | None:
    """Cross-option rules of ``search`` (run after parsing): an error message, or None."""
    if args.b_min > args.b_max:
        return f"argument --b-min: must be <= --b-max ({args.b_max}), not {args.b_min}"
    return check_quantizer_options(args)


def check_acaq(args) -> str | None:
    """Cross-option rules of ``acaq``: MGL needs --target, MDL takes none; an error message, or None."""
    if args.mode == "mgl" and args.target is None:
        return "argument --target: mode mgl needs a target, a PSNR in dB (e.g. 30) or an MSE (e.g. 1e-3)"
    if args.mode == "mdl" and args.target is not None:
        return f"argument --target: mode mdl takes no target (its L_metric is the full-precision loss), not {args.target}"
    return None
