"""FHIR R4 in and out: read_fhir (Bundle/resources -> Study) and write_fhir_bundle (Study -> Bundle)."""

from cartlab.io.fhir.mapping import FhirMapping, load_mapping
from cartlab.io.fhir.reader import read_fhir, read_fhir_with_report
from cartlab.io.fhir.writer import build_bundle, write_fhir_bundle

__all__ = ["FhirMapping", "build_bundle", "load_mapping", "read_fhir", "read_fhir_with_report", "write_fhir_bundle"]
