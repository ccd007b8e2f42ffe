"""Training manifests: parse with line/column marks, validate, convert, expand sweeps.

Public surface (what engines and the UI use):
    load_manifest(path) -> Manifest                raises ManifestError (all problems, FILE:LINE:COL)
    parse_manifest(text, source) -> ManifestResult  errors and warnings, for live validation
"""
from .model import (  # noqa: F401
    Connection,
    DataStore,
    Framework,
    Manifest,
    Sweep,
)
