"""The one error type of cryolib.

Every boundary check (files, CLI arguments, dataset names, checkpoints) raises
:class:`CryolibError` with a message that names the offending input and, where
possible, the fix. The CLI turns it into a one-line message and exit code 2.
"""

from __future__ import annotations

import numbers


class CryolibError(Exception):
    """A user-facing error: bad input, a missing file, an incompatible checkpoint."""


def is_whole_number(value: object) -> bool:
    """True for a Python or numpy integer; False for anything else, bools included (True is not 1 px)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
