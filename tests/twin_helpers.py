"""A virtual patient observed on the twin's schedule, as a study (shared by the twin tests)."""

from __future__ import annotations


def virtual_patient(seed: int = 123, days: float = 28):
    """(study, true theta, noise-free simulation) of one held-out virtual patient observed on the
    schedule shortened to ``days`` (noise, censoring), from :func:`cartlab.twin.calibrate.virtual_patients`."""
    from cartlab.model import Study, conform
    from cartlab.protocol import load_protocol
    from cartlab.twin.calibrate import virtual_patients
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.model import simulate
    from cartlab.twin.observe import load_schedule, observe, study_tables

    theta, base, ev, idx = virtual_patients(1, seed=seed, start=0)
    sch = load_schedule().shortened(days)
    sim = simulate(theta, base, ev, sch.t_out(), clinic=load_clinic(), keep_states=False)
    seen = observe(sim, idx, seed, sch, covariates={"weight_kg": base.weight_kg})
    tabs = study_tables(seen, ev, load_protocol("nct04762485").lymphodepletion)
    study = Study("virtual", **{k: conform(v, k) for k, v in tabs.items()})
    study.folder_tables = tabs
    return study, theta[0], sim
