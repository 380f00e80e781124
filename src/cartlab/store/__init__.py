"""Persistence: canonical studies in an embedded DuckDB file."""

from cartlab.store.duckdb_store import DEFAULT_STORE, ImportResult, Store, StoreError, StoreLookupError

__all__ = ["DEFAULT_STORE", "ImportResult", "Store", "StoreError", "StoreLookupError"]
