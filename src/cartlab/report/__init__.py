"""Reports: the clinical-course figure and self-contained HTML pages per subject and per study."""

from cartlab.report.figures import course_figure
from cartlab.report.html import write_subject_report
from cartlab.report.study import write_study_report

__all__ = ["course_figure", "write_subject_report", "write_study_report"]
