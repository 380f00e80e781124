"""Response assessment: ELN 2022 (AML) and ALL criteria per marrow, MRD, relapse, best response,
molecular log reductions, target-antigen loss, and cohort endpoints.

Criteria are data (``criteria/*.yaml``, a citation per category); the engines are pure functions over
the canonical frames and every call carries its rule, a reason and the source rows.
"""

from cartlab._deprecated import renamed
from cartlab.response.adtte import EndpointOptions, derive_adtte
from cartlab.response.best import BestResponseOptions, derive_adrs, derive_best_response, derive_response_summary
from cartlab.response.endpoints import (
    aalen_johansen,
    clopper_pearson,
    cumulative_incidence,
    km_estimate,
    median_survival,
    number_at_risk,
    response_rate,
)
from cartlab.response.marrow import (
    ResponseOptions,
    derive_all_response,
    derive_eln2022_response,
    derive_marrow_response,
)
from cartlab.response.molecular import MolecularOptions, derive_antigen_loss, derive_molecular_response
from cartlab.response.relapse_episodes import derive_relapse

__all__ = [
    "BestResponseOptions",
    "EndpointOptions",
    "MolecularOptions",
    "ResponseOptions",
    "aalen_johansen",
    "clopper_pearson",
    "cumulative_incidence",
    "derive_adrs",
    "derive_adtte",
    "derive_all_response",
    "derive_antigen_loss",
    "derive_best_response",
    "derive_eln2022_response",
    "derive_marrow_response",
    "derive_molecular_response",
    "derive_relapse",
    "derive_response_summary",
    "km_estimate",
    "median_survival",
    "number_at_risk",
    "response_rate",
]


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(
    __name__, "all_response", "antigen_loss", "best_response", "eln2022_response", "marrow_response",
    "molecular_response", "relapse", "response_summary")
