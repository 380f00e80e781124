"""FHIR R4 in and out: read_fhir (Bundle/resources -> Study) and write_fhir_bundle (Study -> Bundle)."""

from types import MappingProxyType

from cartlab.io.fhir._partial import DEFAULTS as _PARTIAL_DEFAULTS
from cartlab.io.fhir.mapping import FhirMapping, load_mapping
from cartlab.io.fhir.reader import READ_STATUSES, read_fhir, read_fhir_with_report
from cartlab.io.fhir.writer import build_bundle, write_fhir_bundle

#: the reader's options when none is given (what ``Study.reader_options`` records for a FHIR study read with
#: the defaults; the report names only the options that differ): Observation.status codes read as results,
#: ``numeric_valuestring``, ``partial_death_dates``, ``partial_event_dates``, ``ongoing_interventions``,
#: ``unknown_indication``
READER_DEFAULTS = MappingProxyType({"observation_statuses": READ_STATUSES, "numeric_valuestring": "skip",
                                    **_PARTIAL_DEFAULTS})

__all__ = ["READER_DEFAULTS", "READ_STATUSES", "FhirMapping", "build_bundle", "load_mapping", "read_fhir",
           "read_fhir_with_report", "write_fhir_bundle"]
