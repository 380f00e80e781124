"""Built-in data: the seed case (paper values + labelled reconstruction) and synthetic cohorts."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cartlab.model import Study


def seed_case_path() -> Path:
    """Folder of the shipped seed case (study folder format v1)."""
    return Path(str(resources.files("cartlab.datasets").joinpath("seed_case")))


def seed_case() -> Study:
    """The CD7 CAR-T AML index case of Cao et al. 2022 as a canonical :class:`Study`.

    Values stated by the paper carry ``source == "paper"``; every other value is reconstructed
    (synthetic) and carries ``source == "reconstructed"``.

    >>> study = seed_case()
    >>> study.observations.filter(source="paper").height > 0
    True
    """
    from cartlab.io import read_study

    return read_study(seed_case_path(), study_id="seed_case")


def synthetic_cohort(*args, **kwargs):
    """Seeded synthetic cohort generator; see :func:`cartlab.datasets.synthetic.synthetic_cohort`."""
    from cartlab.datasets.synthetic import synthetic_cohort as _gen

    return _gen(*args, **kwargs)


__all__ = ["seed_case", "seed_case_path", "synthetic_cohort"]
