"""Response assessment: ELN 2022 (AML) and ALL criteria per marrow, MRD, relapse, best response,
molecular log reductions, target-antigen loss, and cohort endpoints.

Criteria are data (``criteria/*.yaml``, a citation per category); the engines are pure functions over
the canonical frames and every call carries its rule, a reason and the source rows.
"""

from cartlab.response.best import BestResponseOptions, best_response, derive_adrs, response_summary
from cartlab.response.marrow import (
    ResponseOptions,
    all_response,
    eln2022_response,
    marrow_response,
    relapse,
)
from cartlab.response.molecular import MolecularOptions, antigen_loss, molecular_response

__all__ = [
    "BestResponseOptions",
    "MolecularOptions",
    "ResponseOptions",
    "all_response",
    "antigen_loss",
    "best_response",
    "derive_adrs",
    "eln2022_response",
    "marrow_response",
    "molecular_response",
    "relapse",
    "response_summary",
]
