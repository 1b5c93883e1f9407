"""
Float arithmetic that the decisions rely on.
"""

from __future__ import annotations

import math


def until(now: float, at: float) -> float:
    """
    The smallest ``r >= 0`` with ``now + r >= at``.

    ``at - now`` is not always enough: in floating point ``now + (at - now)``
    can land one ulp below ``at``, and a caller who sleeps exactly the
    advertised ``retry_after`` would then be refused again. Nudging ``r`` up
    by ulps until the sum reaches ``at`` makes the promise exact.
    """
    r = at - now
    if r <= 0:
        return 0.0
    while now + r < at:
        r = math.nextafter(r, math.inf)
    return r
