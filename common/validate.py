"""Declarative validation on pydantic, with one error style for parameters, files and CLI options.

A parameter set is a frozen, keyword-only pydantic dataclass whose fields carry their ranges
(``Annotated[int, Field(ge=1, le=32)]``); ``@spec(ConfigError)`` makes it strict (no bool for an int,
no string for a number) and turns pydantic's ``ValidationError`` into the project's own error type
with one message per problem, for example::

    HashEncoderParams.levels must be an integer in [1, 32], not 0
    unknown key 'level' in hash_encoder (allowed: levels, log2_table_size, ...)

Cross-field rules go in ``__post_init__`` (it runs after the field checks) and raise the error type
directly, with ``range_message`` for the common "in [lo, hi]" case. ``from_mapping`` builds a spec
from a parsed YAML/JSON mapping; ``option`` makes an argparse ``type=`` from the same constraints,
so a bad command-line value is refused by argparse, naming the option, before any work starts.
``checker`` validates one value (a function argument, a policy entry) against the same kind of
annotation, with the message ``<what> must be an integer in [2, 32], not 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import annotated_types
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

__all__ = ["spec", "from_mapping", "read_yaml", "range_message", "describe", "option", "checker", "ValidationError",
           "Field", "Annotated"]

#: Strict types (``True`` is not an integer, ``"3"`` is not a number) and no unknown keys.
SPEC_CONFIG = ConfigDict(strict=True, extra="forbid")


def _bounds(metadata) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(m, key, None) is not None:
                out[key] = getattr(m, key)
        if getattr(m, "allow_inf_nan", None) is False:
            out["finite"] = True
        if isinstance(m, annotated_types.Interval):
            out.update({k: v for k, v in (("ge", m.ge), ("gt", m.gt), ("le", m.le), ("lt", m.lt)) if v is not None})
    return out


def _kind(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return {int: "an integer", bool: "a bool (true or false)", float: "a number", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def describe(annotation, metadata=()) -> str:
    """What a value of this annotation must be, in words: ``an integer in [1, 32]``, ``a number > 0``."""
    if typing.get_origin(annotation) is Annotated:
        args = typing.get_args(annotation)
        metadata = list(metadata) + [m for a in args[1:] for m in (getattr(a, "metadata", None) or [a])]
    kind, b = _kind(annotation), _bounds(metadata)
    if b.get("finite"):
        kind = "a finite number"
    if "ge" in b and "le" in b:
        return f"{kind} in [{b['ge']}, {b['le']}]"
    if "gt" in b and "le" in b:
        return f"{kind} in ({b['gt']}, {b['le']}]"
    if "ge" in b and "lt" in b:
        return f"{kind} in [{b['ge']}, {b['lt']})"
    parts = [f"{op} {b[key]}" for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if key in b]
    return kind + (" " + " and ".join(parts) if parts else "")


def range_message(owner: str, name: str, value: Any, lo: Any, hi: Any, kind: str = "an integer") -> str:
    """``<owner>.<name> must be <kind> in [lo, hi], not <value>``: for bounds that depend on other fields."""
    return f"{owner}.{name} must be {kind} in [{lo}, {hi}], not {value!r}"


def _message(cls, err: dict, where: str | None) -> str:
    owner = cls.__name__
    fields = {f.name: f for f in dataclasses.fields(cls)}
    allowed = ", ".join(fields)
    loc = err.get("loc") or ()
    name = str(loc[0]) if loc else ""
    if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown key {name!r} in {where or owner} (allowed: {allowed})"
    if err["type"] in ("missing_keyword_only_argument", "missing_argument", "missing"):
        return f"{where or owner}.{name} is required"
    if name in fields:
        info = cls.__pydantic_fields__[name]
        what = describe(info.annotation, info.metadata)
        path = ".".join(str(x) for x in loc)
        return f"{owner}.{path} must be {what}, not {err['input']!r}"
    return f"{owner}: {err['msg']}"


def spec(error: type[Exception] = ValueError) -> Callable[[type], type]:
    """Class decorator: a frozen, keyword-only, strict pydantic dataclass raising ``error`` on bad input.

    ``__post_init__`` may raise ``error`` itself (cross-field rules); it passes through unchanged.
    ``dataclasses.replace``, ``asdict`` and ``fields`` work as on a plain dataclass and re-validate.
    Unannotated class attributes (``PIPELINE_STAGES = 6``) stay constants, as in a plain dataclass.
    """

    def wrap(cls: type) -> type:
        cls = _pydantic_dataclass(frozen=True, kw_only=True, config=SPEC_CONFIG)(cls)
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
                first = errors[0]
                inner = (first.get("ctx") or {}).get("error")
                if first["type"] == "value_error" and isinstance(inner, error):
                    raise inner from None
                raise error(_message(type(self), first, None)) from None

        cls.__init__ = __init__
        return cls

    return wrap


def from_mapping(cls: type, data: Any, *, where: str, error: type[Exception] = ValueError):
    """Build the spec ``cls`` from a parsed mapping; errors name ``where`` (a file section, a file).

    Raises:
        error: not a mapping, an unknown key (naming it and the allowed ones), or a bad value.
    """
    if not isinstance(data, dict):
        raise error(f"{where} must be a mapping of parameters, not {data!r}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in allowed:
            raise error(f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")
    return cls(**data)


def read_yaml(path, *, error: type[Exception] = ValueError, what: str = "config") -> Any:
    """Parse a YAML file: the one reader of the project's YAML files (presets, policies).

    Raises:
        error: the file cannot be read, or is not valid YAML; the message names ``what`` and the path.
    """
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {str(path)!r} is not a text file") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {str(path)!r} is not valid YAML: {exc}") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        # PyYAML's constructors raise these on some tagged or malformed scalars ("a: 2001-13-45",
        # "!!timestamp x") and on very deep nesting; they are bad YAML as much as a syntax error is
        raise error(f"{what} {str(path)!r} is not valid YAML: {type(exc).__name__}: {exc}") from None


def option(annotation, *, ge=None, gt=None, le=None, lt=None, finite: bool | None = None) -> Callable[[str], Any]:
    """An argparse ``type=``: parse a command-line string as ``annotation`` within the bounds.

    ``option(int, ge=1)`` refuses ``0``, ``-5`` and ``1.5``; ``option(float, gt=0)`` refuses ``inf``
    and ``nan`` too (``finite`` defaults to True for floats). argparse reports the option's name,
    the rule and the value, and exits with status 2 before the command runs.
    """
    if finite is None:
        finite = annotation is float
    constraints = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    field = Field(allow_inf_nan=not finite, **constraints) if annotation is float else Field(**constraints)
    full = Annotated[annotation, field]
    adapter = TypeAdapter(full)
    what = describe(full)

    def parse(text: str):
        try:
            value = adapter.validate_python(text if annotation is str else _number(text, annotation))
        except (ValidationError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _number(text: str, annotation):
    if annotation is int:
        return int(text.strip())
    if annotation is float:
        return float(text.strip())
    return text


def checker(annotation, *, error: type[Exception] = ValueError) -> Callable[[Any, str], Any]:
    """A strict validator of one value: ``check(value, what)`` returns ``value`` or raises ``error``.

    ``checker(Annotated[int, Field(ge=2, le=32)])(1, "bits")`` raises ``bits must be an integer in
    [2, 32], not 1``; ``True``, ``8.0``, ``"8"`` and numpy integers are refused like any wrong type
    (strict mode). Build the checker once (module level): building the adapter costs far more than a check.
    """
    adapter = TypeAdapter(annotation)
    must = describe(annotation)

    def check(value: Any, what: str) -> Any:
        try:
            return adapter.validate_python(value, strict=True)
        except ValidationError:
            raise error(f"{what} must be {must}, not {value!r}") from None

    return check


def preset_path(name_or_path, folder, what: str, *, error: type[Exception] = ValueError):
    """The YAML file of a preset named ``<folder>/<name>.yaml``, or a path given as is.

    Raises:
        error: no such file: ``unknown <what> '<name>' (known: ...)``, listing the folder's presets.
    """
    from pathlib import Path

    path = Path(name_or_path)
    if not path.suffix:
        path = Path(folder) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(folder).glob("*.yaml")))
        raise error(f"unknown {what} {str(name_or_path)!r} (known: {known})")
    return path
