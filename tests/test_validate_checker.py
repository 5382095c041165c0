"""common.validate.checker: one value against an annotation, with the project's message."""

from typing import Annotated

import pytest
from pydantic import Field

from common.validate import checker


class CheckError(ValueError):
    pass


BITS = checker(Annotated[int, Field(ge=2, le=32)], error=CheckError)
SCALE = checker(Annotated[float, Field(gt=0, allow_inf_nan=False)])


@pytest.mark.parametrize("value", [1, 33, True, 8.0, "8", None])
def test_checker_refuses_with_the_message(value):
    with pytest.raises(CheckError) as info:
        BITS(value, "bits of 'enc.out'")
    assert str(info.value) == f"bits of 'enc.out' must be an integer in [2, 32], not {value!r}"


def test_checker_returns_valid_values():
    assert BITS(2, "b") == 2 and BITS(32, "b") == 32
    assert SCALE(3, "s") == 3.0 and SCALE(0.5, "s") == 0.5
    with pytest.raises(ValueError, match=r"^s must be a finite number > 0, not nan$"):
        SCALE(float("nan"), "s")
