"""What the two Stein fitters share: the options that say how the data are read, the preparation of
the data, and the fitted attributes that describe them.

Both fitters follow one convention (lifelines, scikit-learn): the constructor takes the options,
:meth:`fit` returns the fitted object itself, and everything estimated is an attribute whose name
ends with an underscore (``params_``, ``individual_``, ``observations_`` ...), present only after
``fit``; ``summary`` is a property and ``plot()`` draws the fit.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.kinetics.stein.data import SPLIT_DOSE_GAP_DAYS, _Data, _prepare
from cartlab.kinetics.stein.flags import (
    AUC_EXTRAP_WARN_PCT,
    PEAK_WINDOWS,
    apply_auc_extrapolation,
    apply_peak_window,
    check_option,
    last_sample_times,
)


class _SteinFitter:
    """Data options and fitted-data attributes of :class:`SteinModel` and :class:`SteinPopulationModel`.

    Fitted attributes set by every ``fit``: ``subject_ids_`` (subjects sorted by
    ``subject_id``), ``dosing_`` (their :class:`~cartlab.kinetics.stein.Dosing`, days from the first
    infusion), ``dropped_`` (input rows not used, with the reason).
    """

    def _data_options(self, *, blq: str, blq_below_lloq: bool, dose_handling: str, ftoci: float, fster: float,
                      tlag: float, param: str, missing_dose: str = "error", no_infusion: str = "drop",
                      peak_window: str = "observed", split_dose_gap_days: float | None = None) -> None:
        # what makes a later infusion a re-infusion (dosing_note): the NCA's kinetics.split_dose_gap_days, None
        # its default; a product's labelled split-dose window widens it (review45 F1)
        gap = SPLIT_DOSE_GAP_DAYS if split_dose_gap_days is None else split_dose_gap_days
        if not (isinstance(gap, (int, float)) and gap >= 0):
            raise ValueError(f"split_dose_gap_days must be a number of days >= 0, not {gap!r}")
        self.split_dose_gap_days = float(gap)
        self.missing_dose = missing_dose
        self.no_infusion = no_infusion
        self.peak_window = check_option("peak_window", peak_window, PEAK_WINDOWS)
        self.blq = blq
        self.blq_below_lloq = blq_below_lloq
        self.dose_handling = dose_handling
        self.extras = {"ftoci": ftoci, "fster": fster, "tlag": tlag}
        self.param = param

    def _prepare(self, data: Any, doses: pl.DataFrame | None, covariates: pl.DataFrame | None) -> _Data:
        return _prepare(data, doses=doses, covariates=covariates, param=self.param, blq=self.blq,
                        blq_below_lloq=self.blq_below_lloq, dose_handling=self.dose_handling,
                        missing_dose=self.missing_dose, no_infusion=self.no_infusion,
                        split_dose_gap_days=getattr(self, "split_dose_gap_days", SPLIT_DOSE_GAP_DAYS))

    def _finish_individual(self, df: pl.DataFrame, d: _Data) -> pl.DataFrame:
        """``peak_window`` (flag, and null the extrapolated peak), the AUC's extrapolated share
        (``auc_extrapolated_pct``, flag above ``auc_extrap_warn_pct``) and each subject's dosing note."""
        t_last = last_sample_times(d.t, d.mask)
        out = apply_peak_window(df, t_last, self.peak_window)
        out = apply_auc_extrapolation(out, t_last, d.dosing,
                                      getattr(self, "auc_extrap_warn_pct", AUC_EXTRAP_WARN_PCT))
        return out.with_columns(pl.Series("dosing_note", [d.notes.get(s) for s in d.ids], dtype=pl.String))

    def _set_data(self, d: _Data) -> None:
        self._data = d
        self._by_id = {s: i for i, s in enumerate(d.ids)}
        self.subject_ids_ = list(d.ids)
        self.dosing_ = d.dosing
        self.dropped_ = d.dropped

    def _fitted(self) -> _Data:
        """The fitted data; AttributeError before :meth:`fit`."""
        d = getattr(self, "_data", None)
        if d is None:
            raise AttributeError(f"this {type(self).__name__} is not fitted yet: call fit() first")
        return d

    def _idx(self, subject: Any) -> list[int]:
        """Row numbers of ``subject`` (an id, a list of ids, or None = every subject)."""
        d = self._fitted()
        if subject is None:
            return list(range(d.n))
        subs = [subject] if isinstance(subject, str) else list(subject)
        try:
            return [self._by_id[s] for s in subs]
        except KeyError as e:
            raise KeyError(f"unknown subject {e.args[0]!r}") from None
