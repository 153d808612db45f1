"""Argument checks with Keras-style messages, shared by layers and models.

Plain Python: the data readers use them too.
"""

import math


def check_int(arg: str, value: object, minimum: int) -> None:
    """Fails unless `value` is an int (not a bool) `>= minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{arg}` must be an integer >= {minimum}. "
            f"Received: {arg}={value!r}"
        )


def check_non_negative(arg: str, value: object) -> None:
    """Fails unless `value` is a finite number `>= 0`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"`{arg}` must be a finite number >= 0. Received: {arg}={value!r}"
        )
