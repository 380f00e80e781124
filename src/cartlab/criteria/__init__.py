"""The criteria tables as one body of rules: where each rule id lives and how well it is verified.

Every criteria table (``cartlab/*/criteria/*.yaml``) carries a ``status`` per row or per table:

* ``verified`` — read in the primary source (or the publisher's own table page);
* ``verified_secondary`` — read in a secondary source (a reproduction, a calculator, a reference
  implementation such as admiral);
* ``convention`` — a documented cartlab choice where the standard is silent (nothing to verify);
* ``partially_verified``, ``proxy``, ``unverified`` — not (fully) checked against a source: results
  that rest on such a rule are marked wherever they are shown (:data:`UNSETTLED`).

:func:`rule_status` gives the status of a rule id as an engine writes it; :func:`with_rule_status`
adds ``rule_status`` columns to an engine's output.
"""

from cartlab.criteria.status import (
    STATUS_ORDER,
    UNSETTLED,
    RuleInfo,
    rule_index,
    rule_status,
    rules_in,
    with_rule_status,
)

__all__ = ["STATUS_ORDER", "UNSETTLED", "RuleInfo", "rule_index", "rule_status", "rules_in", "with_rule_status"]
