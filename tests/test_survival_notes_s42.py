"""Session 42: the report's survival and relapse-incidence views say which subjects a missing input
leaves open (ADTTE rules efs.remission_undetermined and censor.relapse_undetermined, review 41 F1/F2):
the curves count them censored, and the caption says so (fix41_endpoints left item).

Courses, by hand (as test_endpoints_s41 F1/F2): A1 is NR on day 14 (30% blasts: evaluable for response)
and its day-28 marrow has no PBBLAST, so it could be CR:
with an EFS landmark of 28, EFS is censored at day 0 (efs.remission_undetermined). C1 is in CR on day
28, and its day-60 marrow reads BMBLAST "<10" (5-10% open): EFS/RFS/LFS/CIR censored on day 28
(censor.relapse_undetermined). A2 is in CR on day 28 with every input: neither note names it."""

from __future__ import annotations

import warnings

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.report.cohort_views import _course_notes
from cartlab.response.endpoints import EndpointOptions
from test_endpoints_s41 import _folder, _marrow


def test_open_endpoints_are_named_in_the_survival_notes(tmp_path):
    obs = (_marrow("A1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("A1", 14, 30, pb=5, anc=0.3, plt=20)
           + _marrow("A1", 28, 2, pb=None)
           + _marrow("A2", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("A2", 28, 2, pb=0)
           + _marrow("C1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("C1", 28, 1)
           + _marrow("C1", 60, "", bm_text="<10"))
    s = _folder(tmp_path, [("A1", 90), ("A2", 90), ("C1", 120)], obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Analysis(s, AnalysisOptions(endpoints=EndpointOptions(efs_landmark_day=28)))
        notes = _course_notes(a, None)
    rem = [n for n in notes if "efs.remission_undetermined" in n]
    rel = [n for n in notes if "censor.relapse_undetermined" in n]
    assert len(rem) == 1 and rem[0].startswith("1 subject(s)") and rem[0].endswith("EFS: A1")
    assert len(rel) == 1 and rel[0].startswith("1 subject(s)") and rel[0].endswith(": C1")
    assert all(p in rel[0] for p in ("EFS", "RFS", "LFS", "CIR"))
    assert not any("A2" in n for n in notes)
    # a selection without them: no note
    assert not [n for n in _course_notes(a, ["A2"]) if "undetermined" in n]
