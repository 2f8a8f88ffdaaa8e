"""cryolib.core.errors: the one error type, and the whole-number check the boundaries share."""

import numpy as np
import pytest

from cryolib.core.errors import CryolibError, is_whole_number


@pytest.mark.parametrize("value", [0, 1, 16, -3, np.int64(8), np.uint8(2)])
def test_integers_are_whole_numbers(value):
    assert is_whole_number(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, 2.5, np.float32(4), "4", None])
def test_bools_floats_and_strings_are_not(value):
    assert not is_whole_number(value)


def test_cryolib_error_is_an_exception():
    with pytest.raises(CryolibError, match="bad"):
        raise CryolibError("bad input")
