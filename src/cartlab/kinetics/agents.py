"""Which dosing rows are CAR-T infusions: one definition for the kinetics engines and the figures."""

from __future__ import annotations

import re

__all__ = ["is_car_t_agent"]


def is_car_t_agent(agent: str | None) -> bool:
    """``CAR-T``, ``CD7 CAR-T``, ``car_t``, ``tisagenlecleucel``, ``axicabtagene ciloleucel`` ...

    >>> [is_car_t_agent(a) for a in ("CD7 CAR-T", "tisagenlecleucel", "fludarabine", None)]
    [True, True, False, False]
    """
    a = re.sub(r"[\s_\-]", "", (agent or "").lower())
    return "cart" in a or a.endswith("leucel") or "cabtagene" in a
