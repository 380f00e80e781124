"""Session 48: a unit mislabelled on many rows is one warning per parameter, unit and side (session 47
left item: creatinine in umol/L labelled mg/dL gave one warning line per distinct value)."""

from cartlab.io.study_folder import validate_study
from test_lead_s39 import _study  # subjects.csv with subject A, observations.csv with the rows


def _unit_warnings(folder):
    return [str(i) for i in validate_study(folder) if i.severity == "warning" and "is the unit right?" in str(i)]


def test_one_warning_per_unit_with_range_and_count(tmp_path):
    # 28 creatinine results in umol/L written as mg/dL (54.0..56.7 in steps of 0.1); by hand, each x 88.4:
    # 54 -> 4773.6 umol/L, 56.7 -> 5012.28: all above the suspicious bound 20 mg/dL = 1768 umol/L (a warning,
    # read as given); 56.6 -> 5003.44 and 56.7 -> 5012.28 are also above the plausible 5000 umol/L (an error)
    values = [round(54 + 0.1 * i, 1) for i in range(28)]
    rows = [f"A,{d},CREAT,{v},mg/dL" for d, v in zip(range(-27, 1), values)]
    rows.append("A,2,CREAT,1.0,mg/dL")  # 88.4 umol/L: neither
    issues = validate_study(_study(tmp_path, rows))
    w = [str(i) for i in issues if i.severity == "warning" and "is the unit right?" in str(i)]
    e = [str(i) for i in issues if i.severity == "error"]
    assert len(w) == 1, w
    assert "CREAT values 54-56.7 mg/dL (= 4773.6-5012.28 umol/L; 28 rows) are above 1768 umol/L" in w[0], w
    assert len(e) == 1, e
    assert ("rows 27, 28, column 'value': CREAT values 56.6-56.7 mg/dL (= 5003.44-5012.28 umol/L; 2 rows) are "
            "outside the plausible range [0, 5000] umol/L: is the unit right?") in e[0], e


def test_a_whole_column_in_the_wrong_unit_is_one_error(tmp_path):
    # a usual creatinine in umol/L (60..150) labelled mg/dL: 60 x 88.4 = 5304, 150 x 88.4 = 13260 umol/L, all
    # above the plausible 5000: one error for the 10 rows (was one per distinct value), naming the range
    rows = [f"A,{d},CREAT,{v},mg/dL" for d, v in zip(range(-9, 1), range(60, 160, 10))]
    e = [str(i) for i in validate_study(_study(tmp_path, rows)) if i.severity == "error"]
    assert len(e) == 1, e
    assert "CREAT values 60-150 mg/dL (= 5304-13260 umol/L; 10 rows) are outside the plausible range" in e[0], e


def test_two_units_two_warnings_single_value_keeps_its_wording(tmp_path):
    # 10.5 g/L and 9 g/L haemoglobin (< 30 g/L: g/dL labelled g/L), 25 g/l once (another spelling of the unit)
    rows = ["A,1,HGB,10.5,g/L", "A,2,HGB,9,g/L", "A,3,HGB,25,g/l"]
    w = sorted(_unit_warnings(_study(tmp_path, rows)))
    assert len(w) == 2, w
    assert "HGB values 9-10.5 g/L (= 9-10.5 g/L; 2 rows) are below 30 g/L" in w[0] + w[1], w
    assert "HGB value 25 g/l (= 25 g/L) is below 30 g/L" in w[0] + w[1], w


# --- session 48: the SDTM reader's "salient" words of unread terms are data (sdtm_map.yaml salient_words)

def test_sdtm_salient_words_come_from_the_mapping(tmp_path):
    from cartlab.io.sdtm import read_sdtm
    from test_sdtm_s46 import _folder

    ae = ("STUDYID,USUBJID,AESEQ,AETERM,AEDECOD,AEBODSYS,AETOXGR,AESTDTC\n"
          "E,A1,1,ENCEPHALOPATHY,Encephalopathy,Psychiatric disorders,3,2021-09-15\n"
          "E,A2,2,NAUSEA,Nausea,Gastrointestinal disorders,1,2021-09-16\n"
          "E,A2,3,NAUSEA,Nausea,Gastrointestinal disorders,1,2021-09-17\n")
    folder = _folder(tmp_path, ae=ae)
    # shipped words (transplant, seizure, oedema, nervous system): neither term is salient
    m = [w.message for w in read_sdtm(folder).warnings if w.file == "ae.csv"]
    assert len(m) == 1 and "among them" not in m[0], m
    # a mapping file adding ENCEPHALOPATHY names it first, with the event it may be
    extra = tmp_path / "map.yaml"
    extra.write_text("salient_words:\n  ENCEPHALOPATHY: an ICANS event\n")
    m = [w.message for w in read_sdtm(folder, mapping=extra).warnings if w.file == "ae.csv"]
    assert len(m) == 1 and "among them Encephalopathy: a term that may be an event" in m[0], m
    assert "an ICANS event" in m[0].split("among them")[1] and "Nausea" not in m[0].split("among them")[1], m
