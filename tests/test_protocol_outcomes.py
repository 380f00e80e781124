"""The protocol's ORR definition at its landmarks."""

from __future__ import annotations

import yaml

from cartlab.datasets import seed_case_path
from cartlab.io import read_study
from cartlab.protocol import load_protocol, parse_protocol
from cartlab.protocol.outcomes import protocol_orr


def test_seed_orr_by_the_trials_definition_and_landmarks():
    study = read_study(seed_case_path())
    p = load_protocol("nct04762485")
    data = yaml.safe_load(open(p.path, encoding="utf-8"))
    data["response"]["landmarks"] = [14, 28]
    p2 = parse_protocol(yaml.safe_dump(data))
    res = protocol_orr(study, p2)
    assert res["landmark_day"].to_list() == [14.0, 28.0, None]
    assert set(res["orr_definition"]) == {"CR + CRi (incl. CRh) + MLFS + PR"}
    # MLFS on day 17 (the paper): not yet a responder by day 14, a responder by day 28
    assert res["n"].to_list() == [1, 1, 1]
    assert res["n_responders"].to_list() == [0, 1, 1]
    # a definition without MLFS (e.g. CR + CRi only) does not count the seed's MLFS
    data["response"]["orr_categories"] = ["CR", "CRi"]
    strict = protocol_orr(study, parse_protocol(yaml.safe_dump(data)))
    assert strict["n_responders"].to_list() == [0, 0, 0]
