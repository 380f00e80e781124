"""The Stein 2019 model's parameters: names, the published population values (:data:`STEIN_2019`),
sampling designs, the options' vocabularies and the optimiser's bounds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: A progress callback: ``progress(stage, done, total)``.
Progress = Callable[[str, int, int], None]

#: BLQ handling: Beal M3 likelihood (default), M1 (drop), LLOQ/2 imputation.
BLQ_METHODS: dict[str, str] = {"m3": "Beal M3", "drop": "dropping (M1)", "half": "LLOQ/2 imputation"}
#: Split infusions: time from the first infusion (Stein's choice) or linear superposition.
DOSE_HANDLINGS: tuple[str, ...] = ("first", "superpose")
#: ``superpose`` with an infusion whose dose is unknown: stop naming the row (default), equal
#: fractions for the subject's infusions, or only its first infusion (``"first"`` for that subject).
MISSING_DOSES: tuple[str, ...] = ("error", "equal", "first")
#: ``doses=`` given but a subject has no infusion row: drop its rows (default; reason "time origin
#: unknown") or keep its times as given (``"as_is"``, noted in ``dosing_note``).
NO_INFUSION: tuple[str, ...] = ("drop", "as_is")

#: Structural parameters of the model, in order.
PARAMS: tuple[str, ...] = ("foldx", "tmax", "cmax", "alpha", "fb", "beta")
_EXTRA = ("tlag", "ftoci", "fster")
LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)

#: A rich sampling design to day 180 (days from the first infusion).
DESIGN_180D: tuple[float, ...] = (0, 1, 2, 3, 4, 7, 9, 11, 14, 21, 28, 42, 56, 90, 180)
#: Rich early sampling, monthly to 1 year, quarterly in year 2. Stein's terminal half-life is
#: ~217 d, so follow-up to day 180 leaves beta and its IIV poorly determined (expected RSE of
#: omega^2_beta ~39% with 500 subjects and LLOQ 50 vs ~12% with this design; see tests).
DESIGN_2Y: tuple[float, ...] = (0, 1, 2, 3, 4, 7, 9, 11, 14, 17, 21, 28, 35, 42, 56, 90, 120, 150, 180,
                                240, 300, 365, 450, 540, 630, 730)
#: Default design of :func:`simulate`.
DEFAULT_TIMES: tuple[float, ...] = DESIGN_2Y

#: Bounds (natural scale) used by the per-subject optimiser.
_BOUNDS = {
    "foldx": (1.01, 1e9),
    "tmax": (0.05, 365.0),
    "cmax": (1e-3, 1e10),
    "alpha": (1e-4, 20.0),
    "fb": (1e-9, 0.999),
    "beta": (1e-7, 5.0),
}
_SIGMA_BOUNDS = (1e-4, 10.0)
_FB_MAX = 1.0 - 1e-12

_CITATION = (
    "Stein AM, Grupp SA, Levine JE, Laetsch TW, Pulsipher MA, Boyer MW, et al. Tisagenlecleucel "
    "Model-Based Cellular Kinetic Analysis of Chimeric Antigen Receptor-T Cells. CPT "
    "Pharmacometrics Syst Pharmacol. 2019;8(5):285-295. doi:10.1002/psp4.12388 (Table 1)"
)


@dataclass(frozen=True)
class PopulationParams:
    """Population parameters of the Stein model.

    ``theta``: typical values (natural scale, medians of the log-normal distributions);
    ``omega2``: between-subject variances of the log-parameters (0 or missing = no IIV);
    ``sigma``: residual SD, additive on the natural-log scale;
    ``covariate_effects``: ``{(parameter, covariate): coefficient}`` with
    ``log P_i = log theta_P + coefficient * (c_i - covariate_centers[c])``.
    """

    theta: Mapping[str, float]
    omega2: Mapping[str, float]
    sigma: float
    ftoci: float = 1.0
    fster: float = 1.0
    tlag: float = 0.0
    covariate_effects: Mapping[tuple[str, str], float] = field(default_factory=dict)
    covariate_centers: Mapping[str, float] = field(default_factory=dict)
    citation: str = field(default="", repr=False)
    note: str = field(default="", repr=False)

    def typical(self) -> dict[str, float]:
        """The typical curve's parameters (plus ``tlag``, ``ftoci``, ``fster``)."""
        d = {p: float(self.theta[p]) for p in PARAMS}
        d.update(tlag=self.tlag, ftoci=self.ftoci, fster=self.fster)
        return d

    def replace(self, **changes: Any) -> PopulationParams:
        """A copy with ``changes`` (e.g. ``covariate_effects=...``)."""
        return replace(self, **changes)


#: Stein 2019 Table 1 (final model), as encoded in nlmixr2lib ``Stein_2019_Tisagenlecleucel``.
#: IIV entries are read as variances omega^2 (see :mod:`cartlab.kinetics.stein` for the caveat).
STEIN_2019 = PopulationParams(
    theta={"foldx": 3900.0, "tmax": 9.3, "cmax": 24000.0, "alpha": 0.16, "fb": 0.0079, "beta": 0.0032},
    omega2={"foldx": 2.4, "tmax": 0.38, "cmax": 0.65, "alpha": 0.91, "fb": 0.80, "beta": 0.86},
    sigma=0.56,
    ftoci=1.2,
    fster=1.0,
    citation=_CITATION,
    note=(
        "IIV read as variances omega^2 of log-normal random effects, as nlmixr2lib does; the "
        "research note (kinetics.md 1.1, 5.1) cautions that Monolix often reports omega as an SD "
        "and this was not verified against the paper. Ftoci=1.2 was not significant in Stein 2019. "
        "Units: copies/ug genomic DNA, days."
    ),
)

