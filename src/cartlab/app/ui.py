"""The dashboard's page layout (Shiny for Python core UI): studies, cohort, patient, twin."""

from __future__ import annotations

from shiny import ui

from cartlab.app.figures import plotly_dependency
from cartlab.app.twin import REGIMENS

FILTERS = (("f_disease", "Disease"), ("f_target", "Target"), ("f_dose", "Dose level (CAR-T cells/kg)"),
           ("f_response", "Best response"), ("f_crs", "Worst ASTCT CRS grade (0–1: a range, inputs missing)"),
           ("f_icans", "Worst ASTCT ICANS grade (0–1: a range, inputs missing)"))

#: under the CRS/ICANS filters: a grade and each range are separate choices (review 41 F9; no "at least" mode)
FILTER_RANGE_NOTE = ("CRS/ICANS: each grade and each range (e.g. 1–2, a day lacked an input) is a choice of its own, "
                     "matched exactly: \"2\" leaves out 1–2 and 2–3. For grade 2 or higher, choose 2, 3, 4, 5 and "
                     "every range that reaches 2 (1–2, 0–2, 2–3, …); \"not evaluable\" is a choice too.")

CSS = """
.cartlab-note { color: #555; font-size: 0.9em; }
.cartlab-headline { font-size: 1.15em; font-weight: 600; margin: 0.3em 0; }
.cartlab-explain { font-size: 0.92em; color: #333; }
.cartlab-banner { background: #fff3cd; border: 1px solid #e0c46c; padding: 0.4em 0.7em; margin: 0.4em 0; }
"""


def downloads(out_id: str):
    """A table's CSV download and its provenance (a JSON file of the same name: filters, options,
    cartlab version, the CSV's SHA-256)."""
    return ui.div(
        ui.download_button(out_id, "Download CSV", class_="btn-sm"),
        ui.download_button(f"{out_id}_prov", "Provenance (JSON)", class_="btn-sm btn-outline-secondary"),
        ui.tags.small(" the JSON records the filters, the analysis options and the cartlab version",
                      class_="cartlab-note"),
    )


def page(study_ids: list[str]):
    """The page: a navbar with one panel per view; the study selector in the sidebar."""
    studies = ui.nav_panel(
        "Studies",
        ui.h4("Studies"),
        ui.output_data_frame("studies_table"),
        ui.output_ui("analysis_info"),
        value="studies",
    )
    cohort = ui.nav_panel(
        "Cohort",
        ui.layout_sidebar(
            ui.sidebar(
                *[ui.input_selectize(key, label, choices=[], multiple=True, options={"placeholder": "all"})
                  for key, label in FILTERS],
                ui.tags.small(FILTER_RANGE_NOTE, class_="cartlab-note", id="filter_range_note"),
                ui.input_action_button("f_clear", "Clear filters", class_="btn-sm"),
                width=280,
            ),
            ui.output_ui("cohort_count"),
            ui.output_ui("cohort_views"),
            ui.card(
                ui.card_header("Subjects (filtered)"),
                ui.output_data_frame("cohort_table"),
                downloads("dl_cohort"),
            ),
            ui.card(
                ui.card_header("Tables of the cohort views"),
                ui.input_select("view_table", "Table", choices=[]),
                ui.output_data_frame("view_table_out"),
                downloads("dl_view_table"),
            ),
        ),
        value="cohort",
    )
    patient = ui.nav_panel(
        "Patient",
        ui.input_selectize("subject", "Subject", choices=[]),
        ui.output_ui("patient_headline"),
        ui.output_ui("day_note"),
        ui.card(ui.card_header("Course (zoom one panel: every panel follows)"), ui.output_ui("course_plot")),
        ui.card(
            ui.card_header("CRS / ICANS grade per day, with the rule and the evidence (cartlab explain)"),
            ui.output_ui("explain_text"),
            ui.output_data_frame("grades_table"),
            downloads("dl_grades"),
        ),
        ui.card(
            ui.card_header("CAR-T kinetics (NCA; Stein 2019 model on request)"),
            ui.output_ui("kinetics_plot"),
            ui.input_action_button("fit_stein", "Fit the Stein 2019 model", class_="btn-sm"),
            ui.output_ui("stein_note"),
            ui.output_ui("kinetics_notes"),
            ui.output_data_frame("kinetics_table"),
            downloads("dl_kinetics"),
        ),
        value="patient",
    )
    twin = ui.nav_panel(
        "Twin",
        ui.p("A forecast of the selected patient by the CD7 CAR-T digital twin (docs/twin.md), fitted to the "
             "data up to the chosen day and simulated forward under two regimens. Every value here is "
             "simulated, not measured. The table's quantities: car_cmax = CAR peak on days 0-28, car_tmax = its "
             "day, car_day28 = CAR level on day 28 (copies/µg gDNA); crs_ge3 = P(ASTCT CRS grade ≥ 3 on a day "
             "0-28); response_d28 = P(ELN 2022 AML CR/CRh/CRi/MLFS on day 28) from simulated blasts, the twin's "
             "AML response set whatever the disease; N (effective draws) = the SIR effective sample size. A value "
             "the twin does not describe is withheld, as by cartlab twin forecast (docs/dashboard.md, Twin).",
             class_="cartlab-note", id="twin_intro"),
        ui.layout_columns(
            ui.input_numeric("twin_day", "Data up to day", value=7, min=0, max=60, step=1),
            ui.input_select("twin_a", "Regimen A", {k: v[0] for k, v in REGIMENS.items()}, selected="clinic"),
            ui.input_select("twin_b", "Regimen B", {k: v[0] for k, v in REGIMENS.items()}, selected="early_toci"),
            ui.input_action_button("twin_run", "Run the forecast"),
        ),
        ui.output_ui("twin_status"),
        ui.output_ui("twin_plot"),
        ui.output_data_frame("twin_table"),
        downloads("dl_twin"),
        value="twin",
    )
    return ui.page_navbar(
        studies, cohort, patient, twin,
        title="cartlab",
        id="nav",
        sidebar=ui.sidebar(
            ui.input_select("study", "Study", choices=study_ids, selected=study_ids[0] if study_ids else None),
            ui.output_ui("study_status"),
            width=240,
        ),
        header=ui.tags.head(plotly_dependency(), ui.tags.style(CSS)),
        fillable=False,
        lang="en",  # WCAG 2.1 SC 3.1.1 (review 39 C1)
    )
