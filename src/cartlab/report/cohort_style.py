"""Colours, marker shapes and texts shared by the matplotlib and plotly cohort renderers, so the
static report and the dashboard use one legend vocabulary."""

from __future__ import annotations

from cartlab.report.cohort_base import RESPONSE_ORDER

RESPONSE_COLORS = {
    "CR": "#1b7837", "CRh": "#5aae61", "CRi": "#a6dba0", "MLFS": "#35978f", "PR": "#fdb863", "SD": "#e08214",
    "NR": "#d6604d", "PD": "#b2182b", "NE": "#878787", "no criteria": "#bababa", "not assessed": "#e0e0e0",
}
OTHER_COLOR = "#4d4d4d"

#: grade 0..5 and "not evaluable" (null)
GRADE_COLORS = {0: "#d9d9d9", 1: "#fee391", 2: "#fe9929", 3: "#d95f0e", 4: "#993404", 5: "#000000", None: "#ffffff"}

#: swimmer markers: key -> (matplotlib marker, plotly symbol, colour, legend text)
SWIMMER_MARKERS = {
    "response": ("D", "diamond", None, "best response (fill = category, on its day)"),
    "relapse:negative": ("X", "x", "#b2182b", "relapse, target antigen negative (e.g. CD7-negative)"),
    "relapse:low": ("X", "x", "#f4a582", "relapse, target antigen below the cut-off, not a documented loss "
                                          "(low before treatment or no pre-treatment value)"),
    "relapse:retained": ("v", "triangle-down", "#b2182b", "relapse, target antigen retained"),
    "relapse:not assessed": ("v", "triangle-down", "#f4a582", "relapse, target antigen not assessed"),
    "allo-HSCT": ("*", "star", "#2166ac", "allogeneic HSCT"),
    "death": ("s", "square", "#000000", "death"),
}
ONGOING_TEXT = "arrow = alive at last follow-up (bar continues)"
#: the arrow's legend when events.csv was not given (``{events}``: the file as the study has it): no death
#: is known, which is not "alive" (review 41 F6; missing is not negative)
ONGOING_UNKNOWN_TEXT = "arrow = no death recorded ({events} not given: vital status unknown)"
#: the band inside the swimmer, survival and relapse-incidence images when events.csv was not given, so a
#: PNG or SVG reused on its own still says it (review 41 F6, as the provenance stamp). Relapses found in the
#: marrows are still derived and drawn, and with no death known the relapse incidence has no competing event,
#: so the band says neither "no relapse" nor "most favourable" (review 41 diff1 F7)
EVENTS_BAND_TEXT = ("{events} not given: no death, new therapy or HSCT known (relapses only from the marrows) "
                    "— deaths unknown")


def ongoing_text(events_absent: str = "") -> str:
    """The swimmer's arrow legend: "alive at last follow-up", or "no death recorded" when the study's
    events file (``events_absent``, e.g. "events.csv") was not given."""
    return ONGOING_UNKNOWN_TEXT.format(events=events_absent) if events_absent else ONGOING_TEXT
OPEN_TEXT = "open marker = value not measured (reconstructed, synthetic or simulated)"
LIGHT_BAR_TEXT = "pale bar = follow-up from not-measured data"
CROSS_SCALE_CITATION = "Pennisi M et al., Blood Adv 2020;4:676 (CRS on five scales)"


def response_color(category: str | None) -> str:
    return RESPONSE_COLORS.get(category or "not assessed", OTHER_COLOR)


def response_categories(values) -> list[str]:
    """The categories present, in display order (known first, then others alphabetically)."""
    present = {v for v in values if v is not None}
    return [c for c in RESPONSE_ORDER if c in present] + sorted(present - set(RESPONSE_ORDER))


def marker_key(marker: str, antigen: str | None) -> str:
    return f"relapse:{antigen or 'not assessed'}" if marker == "relapse" else marker


def grade_label(grade) -> str:
    return "not evaluable" if grade is None else f"grade {grade}"
