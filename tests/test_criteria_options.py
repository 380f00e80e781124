"""The options base class: frozen, validated, resolved against the criteria table's defaults, and
documented from the table (so the documentation cannot drift from the defaults)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from cartlab.criteria import CriteriaOptions, load_raw, option_docs, options_markdown
from cartlab.errors import InputError
from cartlab.grading.crs import CrsOptions
from cartlab.grading.icans import IcansOptions
from cartlab.response.marrow import ResponseOptions

CLASSES = [CrsOptions, IcansOptions, ResponseOptions]


def test_unknown_option_is_refused_with_a_suggestion():
    with pytest.raises(InputError, match=r"CrsOptions: unknown option 'fever_treshold_c' \(did you mean "
                                         r"'fever_threshold_c'\?\)"):
        CrsOptions(fever_treshold_c=38.5)


def test_invalid_value_names_the_option_and_what_is_allowed():
    with pytest.raises(InputError, match=r"summary_episode: Input should be 'course', 'first' or 'worst' \(got 'last'\)"):
        CrsOptions(summary_episode="last")
    with pytest.raises(InputError, match="ice_min_age_years"):
        IcansOptions(ice_min_age_years="twelve")


def test_options_are_frozen_dataclasses():
    o = CrsOptions(sbp_cutoff_mmhg=95)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.sbp_cutoff_mmhg = 80
    assert dataclasses.replace(o, fever_threshold_c=38.3).fever_threshold_c == 38.3
    assert dataclasses.asdict(o)["sbp_cutoff_mmhg"] == 95


def test_resolved_overlays_the_set_options_on_the_table_defaults():
    r = CrsOptions(sbp_cutoff_mmhg=95, counted_indications=["CRS", "other"]).resolved()
    # set: kept as given (an int stays an int: the rule text says "SBP < 95 mmHg")
    assert r["sbp_cutoff_mmhg"] == 95 and isinstance(r["sbp_cutoff_mmhg"], int)
    assert r["counted_indications"] == ("CRS", "other")
    # not set: the table's default (astct_crs_2019.yaml defaults), in the field's type
    assert r["fever_threshold_c"] == 38.0 and r["other_cause_event_window_days"] == (0, 3)
    assert r["summary_episode"] == "course" and r["assessment_window"] is None
    # waiver_categories is an option field since session 30 (it was recorded but could not be set)
    assert r["waiver_categories"] == ("tocilizumab", "corticosteroid")
    assert list(r)[-1] == "criteria"
    # a table default without a field (a table of another version) is passed through
    from cartlab.criteria import load_raw

    table = load_raw("astct_crs_2019")
    other = {**table, "defaults": {**table["defaults"], "a_rule_level_option": [1, 2]}}
    assert CrsOptions().resolved(other)["a_rule_level_option"] == [1, 2]
    i = IcansOptions().resolved()
    assert i == {"ice_min_age_years": 12, "excluded_attributions": ("other",),
                 "unattributed_death": "during_icans",  # session 30 (FHIR audit): an ICANS option
                 "first_day": "infusion",  # session 32: graded from the first CAR-T infusion
                 # session 37 (review 37 B2-B4): ICANS options, today's behaviour as default
                 "loc_missing_with_score": "not_depressed", "ventilated_loc": "grade",
                 "episode_gap_days_count": "any",
                 "absent_events": "unknown",  # session 39 (review 39 B1): an absent events.csv is unknown
                 # session 41 (review 41 F1, F9): the CRS engine's options, today's behaviour as default
                 "unattributed_death_reading": "range", "assessment_window": None, "assessment_end_events": (),
                 "episode_join_gap_days": 1,
                 "capd_subjects": (),  # session 46 (review 46 F4): CAPD whatever the age
                 "criteria": "astct_icans_2019"}


def test_an_option_the_table_lacks_is_refused():
    with pytest.raises(InputError, match="option use_crh does not apply to ALL CAR-T response"):
        ResponseOptions(use_crh=False).resolved(load_raw("all_car_t", "cartlab.response"))
    # the AML table has it
    assert ResponseOptions(use_crh=False).resolved(load_raw("eln2022_aml", "cartlab.response"))["use_crh"] is False


def test_an_invalid_table_default_is_refused():
    table = {**load_raw("astct_crs_2019"), "defaults": {**load_raw("astct_crs_2019")["defaults"],
                                                         "summary_episode": "longest"}}
    with pytest.raises(InputError, match="CrsOptions.summary_episode = 'longest'"):
        CrsOptions().resolved(table)


@pytest.mark.parametrize("cls", CLASSES)
def test_every_option_is_documented_from_the_table(cls):
    text = options_markdown(cls)
    assert cls.__doc__.rstrip().endswith(text.splitlines()[-1].strip())  # the docstring carries the table
    fields = [f.name for f in dataclasses.fields(cls)]
    for table in cls.criteria_tables():
        docs = option_docs(table, cls.criteria_package)
        defaults = load_raw(table, cls.criteria_package)["defaults"]
        # the documented defaults are the table's, as the YAML parser reads them
        assert {k: yaml.safe_load(v) for k, (v, _) in docs.items()} == defaults
    for name in fields:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == len(cls.criteria_tables()) + 2 and cells[-1], f"{cls.__name__}.{name} has no documentation"


def test_docs_read_the_comment_above_and_beside_an_option():
    docs = option_docs("astct_crs_2019")
    assert docs["other_cause_event_window_days"][0] == "[0, 3]"
    # a group heading (##) is not an option's documentation; its own comment is
    assert docs["other_cause_attribution"][1] == "fevers attributed to another cause do not make CRS days"
    # the comment block just above an option, then the comment beside it
    eln = option_docs("eln2022_aml", "cartlab.response")
    assert eln["missing_pb_blasts"][1].startswith("A marrow that would be in remission but has no PBBLAST")
    assert eln["missing_pb_blasts"][1].endswith("not_evaluable | assume_absent")


def test_a_subclass_without_a_table_is_plain():
    class Plain(CriteriaOptions):
        x: int = 1

    assert Plain().x == 1 and Plain.criteria_tables() == ()
    with pytest.raises(TypeError, match="needs the criteria table"):
        Plain().resolved()


def test_a_default_factory_is_documented_as_its_value():
    """options_markdown shows a field(default_factory=dict) as {} (it showed PydanticUndefined)."""
    from dataclasses import field

    from cartlab.criteria.options import CriteriaOptions, options_markdown

    class _FactoryOptions(CriteriaOptions):
        extra_map: dict[str, int] = field(default_factory=dict)
        criteria: str = "astct_crs_2019"

    text = options_markdown(_FactoryOptions)
    assert "PydanticUndefined" not in text and "`{}`" in text
    assert _FactoryOptions().extra_map == {}
