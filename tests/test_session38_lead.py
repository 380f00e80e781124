"""Session 38, lead's fixes (each test fails on the code before it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartlab.io import read_study, validate_study


def mk(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8", newline="")
    return root


def offset_warnings(folder: Path) -> list[str]:
    return [str(i) for i in validate_study(folder) if i.severity == "warning" and "UTC offsets" in str(i)]


# --- a daylight-saving change is the site's clock, not mixed clocks (left over from review 37 B4)

def test_daylight_saving_changes_are_not_mixed_offsets(tmp_path):
    # Paris (CET +01:00 / CEST +02:00; EU summer time 31 Mar - 27 Oct 2024): infusion in March at +01:00,
    # readings after the spring change at +02:00 and after the autumn change at +01:00 again. Two changes of
    # one hour, 210 days apart: one zone's clock, written as local time, as the spec asks.
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_datetime\nS1,AML,2024-03-20T10:00+01:00\n",
        "observations.csv": "subject_id,day,datetime,param,value,unit\n"
                            "S1,,2024-03-25T08:00+01:00,TEMP,37,C\n"
                            "S1,,2024-04-05T08:00+02:00,TEMP,37,C\n"
                            "S1,,2024-10-28T08:00+01:00,TEMP,37,C\n",
    })
    assert offset_warnings(folder) == []
    # the documented rule (offsets not applied; spec "Time": calendar day + clock time) is unchanged:
    # 5 April is 16 calendar days after 20 March, 08:00 as written -> 16 + 8/24
    obs = read_study(folder).observations.sort("day")
    assert obs["day"][1] == pytest.approx(16 + 8 / 24)


@pytest.mark.parametrize("stamps", [
    # local time and UTC interleaved within days: changes of one hour, but 1 day apart, not a DST pattern
    ("2024-03-20T10:00+01:00", "2024-03-21T08:00Z", "2024-03-22T08:00+01:00"),
    # a two-hour change is no daylight-saving change
    ("2024-03-20T10:00+01:00", "2024-03-21T08:00-01:00", "2024-03-22T08:00-01:00"),
])
def test_mixed_clocks_are_still_warned(tmp_path, stamps):
    inf, a, b = stamps
    folder = mk(tmp_path / "s", {
        "subjects.csv": f"subject_id,disease,infusion_datetime\nS1,AML,{inf}\n",
        "observations.csv": f"subject_id,day,datetime,param,value,unit\nS1,,{a},TEMP,37,C\nS1,,{b},TEMP,37,C\n",
    })
    assert len(offset_warnings(folder)) == 2  # subjects.csv and observations.csv, as before
