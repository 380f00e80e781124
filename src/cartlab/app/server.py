"""The dashboard's server logic (Shiny for Python) and :func:`create_app`, the ASGI app ``cartlab serve`` runs.

Slow work (analysing a study on first use, fitting the twin, fitting the Stein model) runs as a
Shiny extended task in a worker thread; a ui.Progress panel shows its stage while it runs, and the
results are cached (:class:`~cartlab.app.data.Catalog`, :class:`~cartlab.app.twin.TwinCache`), so
every later page reads tables.
"""

from __future__ import annotations

import asyncio
import re
import threading

import polars as pl
from shiny import App, reactive, render, req, ui

from cartlab.app import cohort as C
from cartlab.app import figures as F
from cartlab.app.cohort import FILTER_COLUMNS, display_frame, filter_tag
from cartlab.app.data import Catalog, describe_options
from cartlab.app.links import resolve_subject, url_subject
from cartlab.app.security import HostPolicy, TokenGuard, safe_filename
from cartlab.app.twin import REGIMENS, TwinCache
from cartlab.app.ui import page
from cartlab.io.csv_safe import DEFAULT_CSV_FORMULA_GUARD, check_guard, safe_csv_text

#: fitted Stein curves per (study id, subject id): (days, values, parameter row)
_STEIN: dict[tuple[str, str], tuple[list, list, dict]] = {}
_STEIN_LOCK = threading.Lock()


def csv_text(frame: pl.DataFrame, guard: str = DEFAULT_CSV_FORMULA_GUARD) -> str:
    """A table as CSV text (list columns joined with '; ', as ``cartlab analyze`` writes them), text
    cells starting with ``= + - @``, tab, CR or NUL prefixed with ``'`` unless ``guard="off"``
    (:mod:`cartlab.io.csv_safe`: OWASP CSV Injection, ASVS 1.2.10)."""
    return safe_csv_text(frame, guard)


def provenance(view, table: str, file_name: str, csv: str, filters: dict | None = None, *,
               n_rows: int | None = None, **extra) -> dict:
    """How a downloaded CSV was made (its companion ``<name>.provenance.json``): cartlab's version, the
    study, the table, the filters (an empty mapping: none), the analysis options (every option as
    applied, and those differing from the defaults), the protocol, the row count and the CSV's
    SHA-256 (to pair the two files), and the table-specific ``extra`` (subject, twin regimens).
    ``n_rows``: the frame's height; without it the CSV's records are counted as RFC 4180 reads them
    (a quoted cell may hold a line break: not a row; review 41 F8)."""
    import csv as csv_module
    import datetime
    import hashlib
    import io

    from cartlab import __version__

    if n_rows is None:
        n_rows = max(0, sum(1 for _ in csv_module.reader(io.StringIO(csv))) - 1) if csv else 0
    return {
        "file": file_name,
        "sha256": hashlib.sha256(csv.encode("utf-8")).hexdigest(),
        "made_by": f"cartlab {__version__} dashboard (cartlab serve)",
        "cartlab_version": __version__,
        "made_at_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "study_id": view.study_id,
        "table": table,
        "rows": n_rows,
        "filters": C.active_filters(filters or {}),
        **extra,
        "options_not_default": {k: {"value": v, "default": d} for k, (v, d) in sorted(view.overrides.items())},
        "options_all_defaults": not view.overrides,
        "options_following": list(getattr(view, "follows", [])),
        "protocol": view.protocol,
        "options": view.options,
    }


def _name(stem: str) -> str:
    """A download's file name: ``stem.csv`` sanitised, never cut inside its extension."""
    base = safe_filename(stem, "table")[:110]
    return f"{base}.csv"


class _Stage:
    """The stage of a running task (written by the worker thread, read by the progress panel)."""

    def __init__(self):
        self.message, self.value = "starting", 0.0
        self._lock = threading.Lock()

    def __call__(self, message: str, value: float) -> None:
        with self._lock:
            self.message, self.value = message, value

    def read(self) -> tuple[str, float]:
        with self._lock:
            return self.message, self.value


def _progress_panel(task, stage: _Stage, title: str):
    """An effect showing a ui.Progress panel with ``stage`` while ``task`` runs."""
    holder: dict = {}

    @reactive.effect
    def _show():
        if task.status() != "running":
            p = holder.pop("p", None)
            if p is not None:
                p.close()
            return
        reactive.invalidate_later(0.5)
        p = holder.get("p")
        if p is None:
            p = holder["p"] = ui.Progress(min=0, max=1)
        msg, val = stage.read()
        p.set(value=max(val, 0.01), message=title, detail=msg)

    return _show


def make_server(catalog: Catalog, twins: TwinCache, csv_formula_guard: str = DEFAULT_CSV_FORMULA_GUARD):
    def server(input, output, session):
        stage, twin_stage, stein_stage = _Stage(), _Stage(), _Stage()

        # -- the study (analysed once, in a worker thread, with progress)
        @reactive.extended_task
        async def analyse(study_id: str):
            return await asyncio.to_thread(catalog.view, study_id, stage)

        _progress_panel(analyse, stage, "Analysing the study (once)")

        @reactive.effect
        @reactive.event(input.study)
        def _start():
            if catalog.cached(input.study()) is None:
                analyse.invoke(input.study())

        @reactive.calc
        def view():
            sid = input.study()
            req(sid)
            v = catalog.cached(sid)
            if v is not None:
                return v
            analyse.result()
            v = catalog.cached(sid)
            req(v is not None)
            return v

        @render.ui
        def study_status():
            v = view()
            return ui.div(ui.p(f"{v.cohort.height} subjects; analysed once in {v.seconds:.1f} s", class_="cartlab-note"),
                          ui.p(options_text(v), class_="cartlab-note", id="options_line"))

        @render.data_frame
        def studies_table():
            analyse.status()
            return render.DataGrid(catalog.listing(), width="100%")

        @render.ui
        def analysis_info():
            v = view()
            a = v.analysis
            skipped = [f"{s.engine}: {', '.join(s.subjects[:5]) if s.subjects else 'all subjects'} — {s.reason}"
                       for s in a.skipped]
            from cartlab.app.absent import absent_inputs

            absent = absent_inputs(v.study)
            return ui.div(
                ui.p(f"{v.study_id}: {v.cohort.height} subjects, {len(a.tables())} tables, computed once "
                     f"({v.seconds:.1f} s); every page reads these tables.", class_="cartlab-note"),
                ui.p(ui.tags.b(options_text(v)),
                     " (cartlab serve --set ENGINE.OPTION=VALUE / --options FILE, as cartlab analyze)",
                     class_="cartlab-note"),
                ui.tags.details(ui.tags.summary("Every option of the analysis (as applied)"),
                                ui.tags.pre(_json(v.options))),
                ui.div(ui.p(ui.tags.b("Files not given (missing is not negative: none is taken as absent):")),
                       ui.tags.ul(*[ui.tags.li(t) for _f, t in absent]), class_="cartlab-note", id="absent_inputs")
                if absent else ui.p("Every optional file (doses, interventions, events) was given.",
                                    class_="cartlab-note", id="absent_inputs"),
                ui.tags.details(ui.tags.summary(f"Not analysed ({len(skipped)})"),
                                ui.tags.ul(*[ui.tags.li(s) for s in skipped])) if skipped else None,
            )

        # -- cohort
        url_note = reactive.value(None)  # the message of a link naming a subject the study does not have

        @reactive.effect
        def _fill_filters():
            v = view()
            choices = C.filter_choices(v.cohort)
            for key, values in choices.items():
                ui.update_selectize(key, choices=values, selected=[])
            with reactive.isolate():  # a deep link: ?subject=ID (docs/dashboard.md "Links to a patient")
                cd = session.clientdata
                requested = url_subject(cd.url_search(), cd.url_hash())
            chosen, note = resolve_subject(requested, v.subject_ids, v.study_id)
            url_note.set(note)
            if note is None:
                ui.update_selectize("subject", choices=v.subject_ids, selected=chosen)
            else:  # never another subject silently: an empty choice, and the page names the id
                ui.update_selectize("subject", choices={"": "— choose a subject —", **{i: i for i in v.subject_ids}},
                                    selected="")
            if requested is not None:
                ui.update_navset("nav", selected="patient")

        @reactive.effect
        @reactive.event(input.f_clear)
        def _clear():
            for key in FILTER_COLUMNS:
                ui.update_selectize(key, selected=[])

        @reactive.calc
        def selection() -> dict:
            return {k: tuple(input[k]() or ()) for k in FILTER_COLUMNS}

        @reactive.calc
        def filtered() -> pl.DataFrame:
            return C.filter_cohort(view().cohort, selection())

        def downloads(out_id: str, table: str, stem, frame, filters=None, extra=None):
            """The CSV download ``out_id`` and its provenance JSON ``out_id + "_prov"`` (same file stem)."""

            def name() -> str:
                return _name(stem())

            def csv_fn():
                yield csv_text(frame(), csv_formula_guard)

            def prov_fn():
                data = frame()
                text = csv_text(data, csv_formula_guard)  # the bytes downloaded: the SHA-256 pairs them
                yield _json(provenance(view(), table, name(), text, filters() if filters else None,
                                       n_rows=data.height, csv_formula_guard=csv_formula_guard,
                                       **(extra() if extra else {})))

            csv_fn.__name__, prov_fn.__name__ = out_id, out_id + "_prov"
            render.download_button(filename=name, media_type="text/csv")(csv_fn)
            render.download_button(filename=lambda: name()[:-4] + ".provenance.json",
                                   media_type="application/json")(prov_fn)

        @render.ui
        def cohort_count():
            from cartlab.app.absent import cohort_banner

            n, total = filtered().height, view().cohort.height
            banner = cohort_banner(view().study)
            return ui.div(ui.p(f"{n} of {total} subjects", id="cohort_n", class_="cartlab-headline"),
                          ui.div(banner, class_="cartlab-banner", role="note", id="cohort_absent") if banner else None)

        @reactive.calc
        def views():
            # the whole cohort: the analysis's own tables (km, response_rates ...), not a re-estimate
            sel = filtered()
            return C.cohort_views(view(), None if sel.height == view().cohort.height else sel["subject_id"].to_list())

        @render.ui
        def cohort_views():
            cards = []
            for i, cv in enumerate(views()):
                body = [ui.p(cv.caption, class_="cartlab-note")] if cv.caption else []
                if cv.unavailable:
                    body.append(ui.p(f"not available: {cv.unavailable}", class_="cartlab-note"))
                elif cv.figure is not None:
                    body.append(ui.HTML(F.to_html(cv.figure, f"cohort_view_{i}")))
                elif cv.table is not None:
                    body.append(ui.HTML(display_frame(cv.table).head(50).to_pandas().to_html(index=False,
                                                                                           border=0)))
                cards.append(ui.card(ui.card_header(cv.title), *body))
            return ui.div(*cards)

        @reactive.effect
        def _view_tables():
            keys = {cv.key: cv.title for cv in views() if cv.table is not None}
            ui.update_select("view_table", choices=keys)

        @reactive.calc
        def chosen_view_table() -> pl.DataFrame:
            key = input.view_table()
            req(key)
            hit = [cv.table for cv in views() if cv.key == key and cv.table is not None]
            req(hit)
            return hit[0]

        @render.data_frame
        def view_table_out():
            return render.DataGrid(display_frame(chosen_view_table()), width="100%")

        downloads("dl_view_table", "cohort view table", lambda: f"{view().study_id}_{input.view_table()}"
                  f"{filter_tag(selection())}", chosen_view_table, selection,
                  lambda: {"view_table": input.view_table(), "subjects": filtered().height})

        @render.data_frame
        def cohort_table():
            from cartlab.app.absent import interpolated_only

            interp = interpolated_only(view().table("icaht_daily"), filtered()["subject_id"].to_list())
            return render.DataGrid(display_frame(C.cohort_display(filtered(), interp)), width="100%", height="420px",
                                   filters=False)

        downloads("dl_cohort", "subjects (filtered cohort)",
                  lambda: f"{view().study_id}_subjects{filter_tag(selection())}", filtered, selection,
                  lambda: {"subjects": filtered().height, "subjects_in_study": view().cohort.height})

        # -- patient
        @reactive.calc
        def patient():
            sid = input.subject()
            req(sid)
            v = view()
            req(sid in set(v.subject_ids))
            return v.patient(sid)

        @render.ui
        def patient_headline():
            if url_note() and not input.subject():
                return ui.div(ui.p(url_note(), class_="cartlab-banner", role="alert", id="subject_error"))
            banner, headline, notes = patient_headline_parts(view(), patient())
            return ui.div(
                ui.div(banner, class_="cartlab-banner", role="note", id="patient_banner") if banner else None,
                ui.p(headline, class_="cartlab-headline", id="patient_headline_text"),
                *[ui.p(n, class_="cartlab-note") for n in notes])

        @render.ui
        def course_plot():
            return ui.HTML(F.to_html(F.course_spec(patient()), "course_fig"))

        @render.ui
        def day_note():
            if patient().has_car_t_dose:
                return None
            return ui.p("No CAR-T dose is recorded for this subject: its days are study days, not days after a "
                        "CAR-T infusion.", class_="cartlab-note", id="no_car_t_note")

        @reactive.calc
        def explained():
            from cartlab.explain import explain

            p, v = patient(), view()
            return [explain(v.analysis, w, p.subject_id) for w in ("crs", "icans")]

        @render.ui
        def explain_text():
            from cartlab.app.absent import patient_notes

            return ui.div(*[ui.p(ui.tags.b(e.what.upper() + ": "), e.headline, ui.br(),
                                 ui.tags.small(e.criteria), class_="cartlab-explain") for e in explained()],
                          *[ui.p(f"⚠ {n}", class_="cartlab-note", id=f"absent_note_{i}")
                            for i, n in enumerate(patient_notes(view().study))])

        @reactive.calc
        def grades():
            p = patient()
            return C.grades_table(p.crs_daily, p.icans_daily, p.kinds)

        @render.data_frame
        def grades_table():
            return render.DataGrid(display_frame(grades()), width="100%", height="360px")

        downloads("dl_grades", "CRS/ICANS grade per day", lambda: f"{patient().subject_id}_grades", grades,
                  extra=lambda: {"subject_id": patient().subject_id})

        # kinetics, with the Stein fit on request (cached)
        @reactive.extended_task
        async def stein_task(study, subject_id: str, key):
            return await asyncio.to_thread(_fit_stein, study, subject_id, key, stein_stage)

        _progress_panel(stein_task, stein_stage, "Fitting the Stein 2019 model")

        @reactive.effect
        @reactive.event(input.fit_stein)
        def _fit():
            p, v = patient(), view()
            key = (v.study_id, p.subject_id)
            if key not in _STEIN:
                stein_task.invoke(v.study.subject(p.subject_id), p.subject_id, key)

        @reactive.calc
        def stein():
            stein_task.status()
            return _STEIN.get((view().study_id, patient().subject_id))

        @render.ui
        def kinetics_plot():
            s = stein()
            drawn = s is not None and stein_identified(s[2])
            return ui.HTML(F.to_html(F.kinetics_figure(patient(), s[:2] if drawn else None), "kinetics_fig"))

        @render.ui
        def stein_note():
            if stein_task.status() == "error":
                return ui.p(f"Stein fit failed: {stein_task.error()}", class_="cartlab-note")
            s = stein()
            if s is None:
                return None
            return ui.p(stein_note_text(s[2]), class_="cartlab-note", id="stein_note")

        @reactive.calc
        def kinetics():
            return C.kinetics_table(patient().car_kinetics, patient().adpp)

        @render.data_frame
        def kinetics_table():
            return render.DataGrid(display_frame(kinetics()), width="100%")

        downloads("dl_kinetics", "CAR-T kinetics (NCA, ADPP)", lambda: f"{patient().subject_id}_kinetics", kinetics,
                  extra=lambda: {"subject_id": patient().subject_id})

        @render.ui
        def kinetics_notes():
            warns = C.kinetics_warnings(patient().car_kinetics)
            if not warns:
                return None
            return ui.div(ui.p("NCA warnings (each with the interval it belongs to; the table's AUCINT row is "
                               "the AUC window):", class_="cartlab-note"),
                          ui.tags.ul(*[ui.tags.li(w, class_="cartlab-note") for w in warns]), id="kinetics_warnings")

        # -- twin
        @reactive.extended_task
        async def twin_task(study, subject_id, day, regimens):
            return await asyncio.to_thread(twins.compare, study, subject_id, day, regimens, twin_stage)

        _progress_panel(twin_task, twin_stage, "Twin forecast")

        @reactive.effect
        @reactive.event(input.twin_run)
        def _run_twin():
            p, v = patient(), view()
            day = float(input.twin_day() if input.twin_day() is not None else 7)
            regs = tuple(dict.fromkeys((input.twin_a(), input.twin_b())))
            twin_task.invoke(v.study, p.subject_id, day, regs)

        @render.ui
        def twin_status():
            st = twin_task.status()
            if st == "initial":
                return ui.p("Choose the day and two regimens, then run the forecast (the first fit of a patient "
                            "takes about 20 s; results are kept).", class_="cartlab-note")
            if st == "running":
                return ui.p("running …", class_="cartlab-note")
            if st == "error":
                return ui.p(twin_error_text(twin_task.error()), class_="cartlab-note", id="twin_error")
            from cartlab.app.twin import TWIN_LEGEND, response_model_note

            notes = twin_task.result()[2]
            resp = response_model_note(patient().summary.get("disease"))
            return ui.div(ui.p("forecast done (simulated values)", class_="cartlab-note", id="twin_done"),
                          ui.p(twin_crs_note(view().overrides), class_="cartlab-note", id="twin_crs_note"),
                          ui.p(f"⚠ {resp}", class_="cartlab-note", id="twin_response_note") if resp else None,
                          *[ui.p(f"⚠ {n}", class_="cartlab-note") for n in notes],
                          ui.p(TWIN_LEGEND, class_="cartlab-note", id="twin_legend"))

        @reactive.calc
        def twin_result():
            req(twin_task.status() == "success")
            return twin_task.result()

        @render.ui
        def twin_plot():
            table, curves, _notes = twin_result()
            from cartlab.app.twin import forecast_figure, withheld_regimens

            return ui.HTML(F.to_html(forecast_figure(curves, float(input.twin_day() or 7), withheld_regimens(table)),
                                     "twin_fig"))

        @render.data_frame
        def twin_table():
            from cartlab.app.twin import display_table

            return render.DataGrid(display_table(twin_result()[0]), width="100%")

        downloads("dl_twin", "twin forecast (simulated)", lambda: f"{patient().subject_id}_twin_forecast",
                  lambda: twin_result()[0],
                  extra=lambda: {"subject_id": patient().subject_id, "twin_data_up_to_day": float(input.twin_day() or 7),
                                 "twin_regimens": [input.twin_a(), input.twin_b()], "values": "simulated",
                                 "crs_options": "defaults", "crs_options_note": twin_crs_note(view().overrides),
                                 **twin_csv_definitions(patient().summary.get("disease"))})

    return server


def patient_headline_parts(view, p) -> tuple[str | None, str, list[str]]:
    """The patient page's banner (None when every row was measured: :func:`not_measured_banner`), its
    headline (disease, target, dose level, worst CRS / ICANS grade, early and late ICAHT grade or why
    not evaluable, best response) and the notes under it."""
    s = p.summary
    crs, icans = grade_text(s, "crs_grade_astct"), grade_text(s, "icans_grade_astct")
    icaht, late = icaht_text(view.analysis, p.subject_id, s), icaht_late_text(s)
    icaht = interpolated_mark(icaht, view, p.subject_id, s)
    why_dose = s.get("dose_level_reason")
    dose = (f"CAR-T {s.get('dose_level') or 'dose unknown' + (f' ({why_dose})' if why_dose else '')}"
            if p.has_car_t_dose else "no CAR-T dose recorded")
    resp, full_reason = response_text(s)
    ranged = [n for n, t in (("CRS", crs), ("ICANS", icans)) if "–" in t]
    notes = []
    if ranged:
        notes.append(f"{' and '.join(ranged)}: a range (lowest–highest): some days lack an input (e.g. a "
                     "temperature); the higher grade is what it would be had the missing inputs been "
                     "positive (missing is not negative).")
    if full_reason:
        notes.append(f"Best response: {full_reason}")
    from cartlab.app.absent import with_events_clause

    notes += [mark_reconstructed(n if n.startswith("Target antigen") else with_events_clause(n, view.study),
                                 p.reconstructed_columns)
              for n in response_notes_lines(view.analysis, p.subject_id)]
    why = {c: not_evaluable_why(view.analysis, p.subject_id, s, f"{c}_grade_astct") for c in ("crs", "icans")}
    crs += f" (ASTCT, worst; {why['crs']})" if why["crs"] else " (ASTCT, worst)"
    icans += f" (ASTCT, worst; {why['icans']})" if why["icans"] else " (ASTCT, worst)"
    headline = (f"{p.subject_id} ({s.get('disease') or '?'}, {s.get('target') or '?'}, {dose}): "
                f"CRS grade {crs} · ICANS grade {icans} · ICAHT early "
                f"(days 0-30) {icaht} · ICAHT late (after day 30) {late} · best response {resp}")
    return not_measured_banner(p.counts), headline, notes


def interpolated_mark(text: str, view, subject_id: str, summary: dict) -> str:
    """The early ICAHT grade with "(interpolated: no ANC measured in days 0-30)" when every day 0-30 of
    the subject's icaht_daily rows is interpolated (review 39 B5; the grade itself is the engine's)."""
    from cartlab.app.absent import INTERPOLATED_MARK, interpolated_only

    if summary.get("icaht_early_grade") is None:
        return text
    table = view.table("icaht_daily") if hasattr(view, "table") else None
    return f"{text} ({INTERPOLATED_MARK})" if subject_id in interpolated_only(table, [subject_id]) else text


def grade_text(summary: dict, col: str) -> str:
    """A worst grade for the headline: "2", the range "0–1" when ``<col>_max`` is higher (an input was
    missing on some day), "not evaluable (at most 2)" when only ``<col>_max`` is known, or "not
    evaluable"."""
    from cartlab.report.cells import _cell, grade_span

    g, hi = summary.get(col), summary.get(f"{col}_max")
    if g is None:
        return "not evaluable" if hi is None else f"not evaluable (at most {_cell(hi)})"
    return grade_span(g, hi)


def not_evaluable_why(analysis, subject_id: str, summary: dict, col: str) -> str | None:
    """Why the worst CRS / ICANS grade ``col`` is not evaluable, naming the missing input, as the
    subject page's "CRS on every scale" and worst-grade rows say it (review 41 F5); None when graded."""
    if summary.get(col) is not None or analysis is None:
        return None
    from cartlab.report.subject_blocks import _icans_not_evaluable, crs_not_evaluable

    return (crs_not_evaluable if col.startswith("crs") else _icans_not_evaluable)(analysis, subject_id)


def _not_evaluable(reason, hi=None) -> str:
    """"not evaluable: <reason>" from an analysis reason ("not evaluable: no ANC in days 0-30 ...");
    "NE (≤4): <reason>" when the grade's upper bound ``hi`` is known, in the words of the study table
    and the subject page (:func:`cartlab.report.cells.grade_range`, review 41 F4)."""
    from cartlab.report.cells import grade_range

    why = str(reason or "").strip().removeprefix("not evaluable").strip(" :").rstrip(".")
    head = "not evaluable" if hi is None else grade_range(None, hi)
    return f"{head}: {why}" if why else head


def icaht_text(analysis, subject_id: str, summary: dict) -> str:
    """The early ICAHT grade for the headline as the report shows it: "0–4 (range: no ANC on 30
    day(s))", "2" (:func:`cartlab.report.subject_blocks.icaht_early_text`), or "not evaluable: <the
    icaht table's early_reason>" ("not evaluable: no ANC in days 0-30 (measured or interpolated)")."""
    from cartlab.report.cells import EMPTY
    from cartlab.report.subject_blocks import icaht_early_text

    if summary.get("icaht_early_grade") is None:  # not evaluable, with or without an upper bound (as late)
        return _not_evaluable(summary.get("icaht_early_reason"), summary.get("icaht_early_grade_max"))
    text = icaht_early_text(analysis, subject_id, summary.get("icaht_early_grade"), summary.get("icaht_early_grade_max"))
    return _not_evaluable(summary.get("icaht_early_reason")) if text == EMPTY else text


def icaht_late_text(summary: dict) -> str:
    """The late ICAHT grade (after day 30) for the headline as the report shows it: "2", "3–4 (range:
    days of the late window without an ANC are not counted)" when ``icaht_late_grade_max`` (table
    icaht) is higher (:func:`cartlab.report.subject_blocks.late_grade_text`), or "not evaluable: <the
    icaht table's late_reason>" ("not evaluable: the late window is empty (it ends on day 29, ...)")."""
    from cartlab.report.subject_blocks import late_grade_text

    g = summary.get("icaht_late_grade")
    if g is None:
        return _not_evaluable(summary.get("icaht_late_reason"), summary.get("icaht_late_grade_max"))
    return late_grade_text(g, summary.get("icaht_late_grade_max"))


def not_measured_banner(counts: dict) -> str | None:
    """The patient page's banner when the subject's rows were not measured, as the report's subject
    page ("This case contains synthetic values."), with the counts in the words of
    :func:`cartlab.report.html.figure_stamp` (``counts``: :func:`cartlab.report.html.provenance_counts`
    of the subject); None when every row was measured or stated in the publication."""
    from cartlab.model import NOT_MEASURED_SOURCES
    from cartlab.report.html import figure_stamp

    kinds = [k for k in NOT_MEASURED_SOURCES if counts.get(k)]
    if not kinds:
        return None
    words = figure_stamp({**counts, "total": counts["not_measured"]})  # the kinds' words, without the counts
    words = words.replace(" data (", " (")  # "reconstructed (not measured)": the words say it once
    moved = counts.get("paper_with_reconstructed_columns") or 0
    part = (f", counting {moved:,} publication row{'' if moved == 1 else 's'} with reconstructed columns "
            "(reconstructed_columns)" if moved else "")
    return (f"This case contains {', '.join(kinds)} values. {counts['not_measured']:,} of {counts['total']:,} "
            f"data rows are {words}{part}.")


#: what the twin's CRS >= 3 probability is graded by (cartlab.twin.summaries.crs_daily_grades)
TWIN_CRS_RULES = ("CRS ≥ 3 of the forecast: ASTCT 2019 grade (astct_crs_2019.yaml) with the default options "
                  "(fever: Tmax ≥ 38.0 °C)")


def options_text(view) -> str:
    """The options line: :func:`describe_options`, then the options not set that follow another
    ("endpoints.efs_landmark_day = 28 (follows best_response.landmark_day)"; review 41 diff1 F8)."""
    follows = list(getattr(view, "follows", []))
    return describe_options(view.overrides, view.protocol) + (f" ({'; '.join(follows)})" if follows else "")


def twin_crs_note(overrides: dict) -> str:
    """The twin page's note on the options its CRS grade uses: always the defaults (the twin grades
    simulated days by the YAML's default options), and, when the analysis sets CRS options, that
    those are not applied to the forecast (review 37 B7)."""
    crs = sorted((k, v) for k, (v, _d) in overrides.items() if k.startswith("crs."))
    if not crs:
        return TWIN_CRS_RULES + ", as this analysis."
    return (TWIN_CRS_RULES + ", not this analysis's " + ", ".join(f"{k}={v}" for k, v in crs)
            + ": the patient page's grades and the forecast's can differ on the same day.")


def twin_error_text(error) -> str:
    """Why the Twin tab gives no forecast: a refusal of the twin (a subject it does not model, e.g. a
    CD19 subject) said as such, without the CLI's option the page has no control for (review 39 C1)."""
    text = str(error)
    if "--allow-other-target" in text or "allow_other_target" in text:
        text = re.sub(r"[.,]?\s*(?:or )?use --allow-other-target.*$", "", text, flags=re.S | re.I).rstrip(" .;")
        return f"the twin does not forecast this subject: {text}. The Twin tab models CD7 CAR-T only."
    return f"the forecast failed: {text}"


def twin_csv_definitions(disease) -> dict:
    """What the twin CSV's columns and quantities mean (its provenance JSON, review 39 B4)."""
    from cartlab.app.twin import QUANTITY_LABELS, TWIN_LEGEND, response_model_note

    return {"quantity_definitions": dict(QUANTITY_LABELS),
            "n_draws": "the SIR effective sample size the values rest on (the probability's resolution is 1/n_draws)",
            "value_shown": "false: withheld by the rule of cartlab twin forecast (twin.forecast.withhold); the "
                           "number is kept, withheld_reason says why",
            "columns_note": TWIN_LEGEND, "response_d28_note": response_model_note(disease)}


_LONG_DAY = re.compile(r"\b(days? )(-?\d+\.\d{3,})(?!\d)")


def mark_reconstructed(note: str, columns: set) -> str:
    """A response note as the page shows it: a value taken from a reconstructed column of the subjects
    row named so ("(last_followup_day, reconstructed)"), and days with more decimals printed to 2
    (docs/dashboard.md "Numbers")."""
    for col in sorted(columns):
        note = re.sub(rf"\(({re.escape(col)})(?=[,)])(?!, reconstructed)", r"(\1, reconstructed", note)
    return _LONG_DAY.sub(lambda m: f"{m.group(1)}{float(m.group(2)):.2f}", note)


def stein_identified(row: dict) -> bool:
    """Whether a Stein 2019 fit (one row of ``SteinModel.individual_``) is an estimate to draw and
    quote: fitted, converged and not flagged "not identified" (a maximum-likelihood fit the data do
    not determine is no estimate)."""
    msg = str(row.get("message") or "").lower()
    return bool(row.get("fitted", True)) and row.get("converged") is True and "not identified" not in msg


def stein_note_text(row: dict) -> str:
    """The note under the kinetics figure: the estimates of an identified fit, else the reason first
    and no Cmax / doubling time (the curve is not drawn)."""
    msg = str(row.get("message") or "").strip()
    if not row.get("fitted", True):  # too little data to fit at all
        return f"Stein 2019 fit not done: {msg or 'too little data'}; no curve drawn."
    if not stein_identified(row):
        what = "not identified" if "not identified" in msg.lower() else "did not converge"
        reason = msg.split(":", 1)[1].strip() if msg.lower().startswith("not identified:") else msg
        return (f"Stein 2019 fit {what}: {reason or 'no reason given'}. No curve drawn and no Cmax or doubling "
                "time given: the data do not determine the model's estimates.")
    if row.get("stein_cmax") is None:  # peak after the last sample (peak_window="observed"): not reported
        peak = f"no Cmax ({row.get('peak_note') or 'peak not reported'})"
    else:
        peak = f"Cmax {row['stein_cmax']:.3g} on day {row['stein_tmax']:.3g}"
    dt = "" if row.get("doubling_time") is None else f", doubling time {row['doubling_time']:.3g} d"
    return f"Stein 2019 fit: {peak}{dt}, converged ({msg})" if msg else f"Stein 2019 fit: {peak}{dt}, converged"


def response_notes_lines(analysis, subject_id: str) -> list[str]:
    """The subject's relapses (every episode: day, rule), duration of response and target antigen on
    blasts, as the report's subject page words them (:func:`cartlab.report.subject_blocks.relapse_text`
    / ``dor_text`` / ``antigen_status``: table ``antigen_loss``)."""
    from cartlab.report.subject_blocks import antigen_status, dor_text, relapse_text

    antigen = [f"Target antigen: {line}" for line in antigen_status(analysis, subject_id)]
    if analysis is None or not analysis.has("best_response"):
        return antigen
    return [f"Relapse: {relapse_text(analysis, subject_id)}", f"Duration of response: {dor_text(analysis, subject_id)}",
            *antigen]


def response_text(summary: dict) -> tuple[str, str | None]:
    """The best response for the headline and, when there is none (or NE), the full reason."""
    br = summary.get("best_response")
    if br is not None and str(br) != "NE":
        return str(br), None
    reason = summary.get("best_response_reason")
    if not reason:
        return "not evaluable", None
    short = str(reason).split(" (cartlab has", 1)[0].strip()
    short = short.removeprefix("not evaluable: ").removeprefix("not evaluable").strip(" :")
    return (f"not evaluable ({short})" if short else "not evaluable"), str(reason)


def _fit_stein(study, subject_id: str, key, stage) -> None:
    import numpy as np

    from cartlab.kinetics.stein import SteinModel, stein_curve

    with _STEIN_LOCK:
        if key in _STEIN:
            return
        stage("fitting", 0.3)
        m = SteinModel(dose_handling="superpose").fit(study)
        days = np.linspace(0.0, float(max(60.0, study.observations["day"].max() or 60.0)), 241)
        curve = np.asarray(stein_curve(days, m.params_, m.dosing_))[0]
        _STEIN[key] = (days.tolist(), curve.tolist(), m.individual_.row(0, named=True))


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, default=str)


def create_app(catalog: Catalog, token: str | None = None, twins: TwinCache | None = None, *,
               host: str | None = None, port: int | None = None, allowed_origins=(),
               csv_formula_guard: str = DEFAULT_CSV_FORMULA_GUARD):
    """The dashboard as an ASGI app: the Shiny app behind :class:`~cartlab.app.security.TokenGuard`,
    which accepts the Host/Origin of ``host:port`` (loopback names always; the port is checked when
    given) and of ``allowed_origins`` (a reverse proxy's public origin). ``csv_formula_guard``: how the
    CSV downloads treat a text cell starting with ``= + - @`` (``quote``, the default, or ``off``;
    :mod:`cartlab.io.csv_safe`)."""
    shiny_app = App(page(catalog.ids()), make_server(catalog, twins or TwinCache(), check_guard(csv_formula_guard)))
    return TokenGuard(shiny_app, token, HostPolicy(host, port, allowed_origins))


__all__ = ["REGIMENS", "create_app", "csv_text", "grade_text", "icaht_late_text", "icaht_text", "interpolated_mark",
           "make_server", "twin_csv_definitions", "twin_error_text",
           "mark_reconstructed", "not_measured_banner", "patient_headline_parts", "twin_crs_note", "provenance", "response_notes_lines", "response_text", "stein_identified", "stein_note_text"]
