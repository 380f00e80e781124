"""CDISC SDTM in (``read_sdtm``) and an SDTM-like writer (``write_sdtm``) for round trips.

See docs/interop/sdtm.md: the domains read, the mapping file format (``sdtm_map.yaml``), the
partial-date rule and what is not mapped.
"""

from cartlab.io.sdtm.mapping import SdtmMapping, load_mapping
from cartlab.io.sdtm.reader import SdtmImport, read_sdtm
from cartlab.io.sdtm.report import markdown_summary, write_mapping_report
from cartlab.io.sdtm.writer import write_sdtm

__all__ = ["SdtmImport", "SdtmMapping", "load_mapping", "markdown_summary", "read_sdtm", "write_mapping_report",
           "write_sdtm"]
