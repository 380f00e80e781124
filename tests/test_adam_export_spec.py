"""ADaM spec limits (SAS transport v5): labels <= 40 ASCII characters and names <= 8 are refused when
broken (never silently truncated, as pyreadstat itself would do with a long label); a malformed spec
is one InputError naming the file."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pyreadstat
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.datasets import seed_case
from cartlab.errors import InputError
from cartlab.io.adam import export_adam, load_spec

RAW = yaml.safe_load((Path(__file__).parents[1] / "src/cartlab/io/adam/adam_spec.yaml").read_text(encoding="utf-8"))
_ANALYSIS = []


def _analysis():
    if not _ANALYSIS:
        _ANALYSIS.append(Analysis(seed_case(), AnalysisOptions()))
    return _ANALYSIS[0]


def _with_age(tmp: Path, **changes) -> Path:
    raw = copy.deepcopy(RAW)
    for v in raw["datasets"]["ADSL"]["variables"]:
        if v.get("name") == "AGE":
            v.update(changes)
    p = tmp / "spec.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return p


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x3000), min_size=1, max_size=80),
                       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=38, max_size=42)))
def test_long_or_non_ascii_labels_are_refused_others_kept_exactly(label, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    spec = _with_age(tmp, label=label)
    ok = label.strip() != "" and label.isascii() and len(label.strip()) <= 40
    if not ok:
        with pytest.raises(InputError, match=r"spec\.yaml: dataset ADSL variable AGE"):
            export_adam(_analysis(), tmp / "out", datasets=["ADSL"], spec=spec)
        assert not (tmp / "out").exists()
        return
    export_adam(_analysis(), tmp / "out", datasets=["ADSL"], spec=spec, formats=("xpt",))
    _, meta = pyreadstat.read_xport(str(tmp / "out" / "adsl.xpt"))
    assert meta.column_names_to_labels["AGE"] == label.strip()  # outer blanks are dropped (documented)


@settings(max_examples=40, deadline=None)
@given(name=st.text(alphabet=st.sampled_from("ABCXYZabc019_-$ "), min_size=0, max_size=12))
def test_names_must_fit_xpt_v5(name, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("name")
    raw = copy.deepcopy(RAW)
    raw["datasets"]["ADSL"]["variables"].append({"name": name, "label": "x", "type": "text", "origin": "Derived",
                                                 "derivation": "x", "cite": "sponsor", "status": "verified"})
    p = tmp / "spec.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    valid = re.fullmatch(r"[A-Z][A-Z0-9_]{0,7}", name) is not None
    if valid and name not in {v.get("name", v.get("use")) for v in RAW["datasets"]["ADSL"]["variables"]}:
        assert name in load_spec(p).datasets["ADSL"].names()
    elif not valid:
        with pytest.raises(InputError, match="not a SAS transport v5 name"):
            load_spec(p)


def test_shipped_spec_fits_xpt_v5():
    spec = load_spec()
    for ds in spec.datasets.values():
        assert len(ds.name) <= 8 and len(ds.label) <= 40
        for v in ds.variables:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]{0,7}", v.name) and len(v.label) <= 40 and v.label.isascii()


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_malformed_spec_is_one_input_error(text, tmp_path_factory):
    p = tmp_path_factory.mktemp("bad") / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load_spec(p)
    except InputError as exc:
        assert str(p) in str(exc)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["datasets"]["ADSL"].update(keys="STUDYID"), "keys must be a list"),
    (lambda r: r.update(common=["x"]), "must be mappings"),
    (lambda r: r["datasets"]["ADSL"]["variables"][2].update(type="date"), "type 'date'"),
    (lambda r: r["datasets"]["ADSL"]["variables"][2].update(origin="Guessed"), "origin 'Guessed'"),
    (lambda r: r["datasets"]["ADSL"]["variables"][2].update(format="DATE9."), "format"),
    (lambda r: r["datasets"]["ADSL"]["variables"][2].update(cite="nowhere"), "cite 'nowhere'"),
    (lambda r: r["datasets"]["ADSL"]["variables"][2].update(status="maybe"), "status 'maybe'"),
    (lambda r: r["datasets"]["ADSL"]["variables"].append({"use": "STUDYID"}), "listed twice: STUDYID"),
    (lambda r: r["datasets"]["ADSL"].update(label="L" * 41), "41 characters"),
])
def test_spec_errors_name_file_dataset_and_variable(mutate, message, tmp_path):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)) as exc:
        load_spec(p)
    assert str(p) in str(exc.value)
