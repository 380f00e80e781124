"""Input and output: the study folder format v1 (read, validate, write)."""

from cartlab.io.dictionary import Param, load_dictionary
from cartlab.io.errors import Issue, StudyValidationError
from cartlab.io.study_folder import read_study, validate_study
from cartlab.io.study_writer import write_study

__all__ = [
    "Issue",
    "Param",
    "StudyValidationError",
    "load_dictionary",
    "read_study",
    "validate_study",
    "write_study",
]
