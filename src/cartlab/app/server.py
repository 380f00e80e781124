"""The dashboard's server logic (Shiny for Python) and :func:`create_app`, the ASGI app ``cartlab serve`` runs.

Slow work (analysing a study on first use, fitting the twin, fitting the Stein model) runs as a
Shiny extended task in a worker thread; a ui.Progress panel shows its stage while it runs, and the
results are cached (:class:`~cartlab.app.data.Catalog`, :class:`~cartlab.app.twin.TwinCache`), so
every later page reads tables.
"""

from __future__ import annotations

import asyncio
import io
import threading

import polars as pl
from shiny import App, reactive, render, req, ui

from cartlab.app import cohort as C
from cartlab.app import figures as F
from cartlab.app.cohort import FILTER_COLUMNS, display_frame
from cartlab.app.data import Catalog
from cartlab.app.security import TokenGuard, safe_filename
from cartlab.app.twin import REGIMENS, TwinCache
from cartlab.app.ui import page

#: fitted Stein curves per (study id, subject id): (days, values, parameter row)
_STEIN: dict[tuple[str, str], tuple[list, list, dict]] = {}
_STEIN_LOCK = threading.Lock()


def csv_text(frame: pl.DataFrame) -> str:
    """A table as CSV text (list columns joined with '; ', as ``cartlab analyze`` writes them)."""
    from cartlab.grading.adam import to_csv_frame

    buf = io.StringIO()
    to_csv_frame(frame).write_csv(buf)
    return buf.getvalue()


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


def make_server(catalog: Catalog, twins: TwinCache):
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
            return ui.p(f"{v.cohort.height} subjects; analysed once in {v.seconds:.1f} s", class_="cartlab-note")

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
            return ui.div(
                ui.p(f"{v.study_id}: {v.cohort.height} subjects, {len(a.tables())} tables, computed once "
                     f"({v.seconds:.1f} s); every page reads these tables.", class_="cartlab-note"),
                ui.tags.details(ui.tags.summary("Options of the analysis (as applied)"),
                                ui.tags.pre(_json(v.options))),
                ui.tags.details(ui.tags.summary(f"Not analysed ({len(skipped)})"),
                                ui.tags.ul(*[ui.tags.li(s) for s in skipped])) if skipped else None,
            )

        # -- cohort
        @reactive.effect
        def _fill_filters():
            choices = C.filter_choices(view().cohort)
            for key, values in choices.items():
                ui.update_selectize(key, choices=values, selected=[])
            ui.update_selectize("subject", choices=view().subject_ids, selected=view().subject_ids[0])

        @reactive.effect
        @reactive.event(input.f_clear)
        def _clear():
            for key in FILTER_COLUMNS:
                ui.update_selectize(key, selected=[])

        @reactive.calc
        def filtered() -> pl.DataFrame:
            return C.filter_cohort(view().cohort, {k: input[k]() or () for k in FILTER_COLUMNS})

        @render.ui
        def cohort_count():
            n, total = filtered().height, view().cohort.height
            return ui.p(f"{n} of {total} subjects", id="cohort_n", class_="cartlab-headline")

        @reactive.calc
        def views():
            return C.cohort_views(view(), filtered()["subject_id"].to_list())

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

        @render.download_button(filename=lambda: safe_filename(f"{view().study_id}_{input.view_table()}.csv"),
                         media_type="text/csv")
        def dl_view_table():
            yield csv_text(chosen_view_table())

        @render.data_frame
        def cohort_table():
            return render.DataGrid(display_frame(filtered()), width="100%", height="420px", filters=False)

        @render.download_button(filename=lambda: safe_filename(f"{view().study_id}_subjects.csv"), media_type="text/csv")
        def dl_cohort():
            yield csv_text(filtered())

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
            p = patient()
            s = p.summary

            def g(x):
                return "not evaluable" if x is None else str(x)

            return ui.div(
                ui.p(f"{p.subject_id} ({s.get('disease') or '?'}, {s.get('target') or '?'}, "
                     f"CAR-T {s.get('dose_level') or 'dose unknown'}): "
                     f"CRS grade {g(s.get('crs_grade_astct'))} (ASTCT, worst) · ICANS grade "
                     f"{g(s.get('icans_grade_astct'))} · best response {s.get('best_response') or 'not evaluable'}",
                     class_="cartlab-headline", id="patient_headline_text"))

        @render.ui
        def course_plot():
            return ui.HTML(F.to_html(F.course_spec(patient()), "course_fig"))

        @reactive.calc
        def explained():
            from cartlab.explain import explain

            p, v = patient(), view()
            return [explain(v.analysis, w, p.subject_id) for w in ("crs", "icans")]

        @render.ui
        def explain_text():
            return ui.div(*[ui.p(ui.tags.b(e.what.upper() + ": "), e.headline, ui.br(),
                                 ui.tags.small(e.criteria), class_="cartlab-explain") for e in explained()])

        @reactive.calc
        def grades():
            p = patient()
            return C.grades_table(p.crs_daily, p.icans_daily)

        @render.data_frame
        def grades_table():
            return render.DataGrid(display_frame(grades()), width="100%", height="360px")

        @render.download_button(filename=lambda: safe_filename(f"{patient().subject_id}_grades.csv"), media_type="text/csv")
        def dl_grades():
            yield csv_text(grades())

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
            fitted = s is not None and s[2].get("fitted", True)
            return ui.HTML(F.to_html(F.kinetics_figure(patient(), s[:2] if fitted else None), "kinetics_fig"))

        @render.ui
        def stein_note():
            if stein_task.status() == "error":
                return ui.p(f"Stein fit failed: {stein_task.error()}", class_="cartlab-note")
            s = stein()
            if s is None:
                return None
            r = s[2]
            if not r.get("fitted", True):  # too little data to identify the model: no curve, and why
                return ui.p(f"Stein 2019 fit: {r['message']}", class_="cartlab-note")
            return ui.p(f"Stein 2019 fit: Cmax {r['car_cmax']:.3g} on day {r['car_tmax']:.3g}, doubling time "
                        f"{r['doubling_time']:.3g} d, converged: {r['converged']} ({r['message']})",
                        class_="cartlab-note")

        @reactive.calc
        def kinetics():
            return C.kinetics_table(patient().car_kinetics, patient().adpp)

        @render.data_frame
        def kinetics_table():
            return render.DataGrid(display_frame(kinetics()), width="100%")

        @render.download_button(filename=lambda: safe_filename(f"{patient().subject_id}_kinetics.csv"),
                         media_type="text/csv")
        def dl_kinetics():
            yield csv_text(kinetics())

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
                return ui.p(f"the forecast failed: {twin_task.error()}", class_="cartlab-note")
            notes = twin_task.result()[2]
            return ui.div(ui.p("forecast done (simulated values)", class_="cartlab-note", id="twin_done"),
                          *[ui.p(f"⚠ {n}", class_="cartlab-note") for n in notes])

        @reactive.calc
        def twin_result():
            req(twin_task.status() == "success")
            return twin_task.result()

        @render.ui
        def twin_plot():
            _table, curves, _notes = twin_result()
            from cartlab.app.twin import forecast_figure

            return ui.HTML(F.to_html(forecast_figure(curves, float(input.twin_day() or 7)), "twin_fig"))

        @render.data_frame
        def twin_table():
            from cartlab.app.twin import display_table

            return render.DataGrid(display_table(twin_result()[0]), width="100%")

        @render.download_button(filename=lambda: safe_filename(f"{patient().subject_id}_twin_forecast.csv"),
                         media_type="text/csv")
        def dl_twin():
            yield csv_text(twin_result()[0])

    return server


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


def create_app(catalog: Catalog, token: str | None = None, twins: TwinCache | None = None):
    """The dashboard as an ASGI app: the Shiny app behind :class:`~cartlab.app.security.TokenGuard`."""
    shiny_app = App(page(catalog.ids()), make_server(catalog, twins or TwinCache()))
    return TokenGuard(shiny_app, token)


__all__ = ["REGIMENS", "create_app", "csv_text", "make_server"]
