"""Early ICAHT grade 4 "never above 0.5 in days 0-30" on partial data (session 29 differential audit,
/work/notes/audit_diffgrade/cases/icaht_single_anc). Hand derivations:

* a single ANC of 0.3 on day 5: days 0-4 and 6-30 unknown; "never above" is not established by data
  starting on day 5 (Liang's grade 4 needs an episode starting day 0-3), so by duration: 1 day <= 0.5
  -> grade 1; had every unknown day been below 0.1 -> grade 4: range 1-4;
* ANC 0.3 on day 2 and 0.2 on day 20, death on day 20: days 2-20 interpolated, all <= 0.5, the data
  start by day 3 and the episode does not end by the last value -> grade 4 (Liang); 19 days <= 0.5
  otherwise (grade 3 by duration with never_above_requires_full_window=true).
"""

from cartlab.grading.icaht import IcahtOptions, derive_icaht
from grading_helpers import study


def _grades(s, options=None):
    return {r["subject_id"]: (r["icaht_early_grade"], r["icaht_early_grade_max"])
            for r in derive_icaht(s, options).iter_rows(named=True)}


def test_single_anc_after_day_3_is_a_range_not_grade_4():
    s = study(subjects=[{"subject_id": "A", "age_years": 50.0}], obs=[("A", 5, "NEUT", 0.3)])
    assert _grades(s) == {"A": (1, 4)}


def test_aplasia_from_day_2_to_death_is_grade_4():
    s = study(subjects=[{"subject_id": "B", "age_years": 50.0}],
              obs=[("B", 2, "NEUT", 0.3), ("B", 20, "NEUT", 0.2)],
              events=[{"subject_id": "B", "day": 20.0, "event": "death"}])
    assert _grades(s)["B"][0] == 4
    assert _grades(s, IcahtOptions(never_above_requires_full_window=True))["B"][0] == 3
    # the option moves the day the data must start by
    assert _grades(s, IcahtOptions(never_above_data_from_day=1))["B"][0] == 3
