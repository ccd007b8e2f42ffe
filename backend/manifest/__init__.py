"""Training manifests: parse with line/column marks, validate, convert, expand sweeps.

Public surface (what engines and the UI use):
    load_manifest(path) -> Manifest                raises ManifestError (all problems, FILE:LINE:COL)
    check_manifest(path) -> ManifestResult          the same without raising, warnings included
    parse_manifest(text, source) -> ManifestResult  errors and warnings, for live validation
    sweep.expand(manifest) -> list[Trial]           one trial per sweep run (imported on demand)
    schema.manifest_schema() / convert.to_wml / convert.to_ffdl
"""
from .model import (  # noqa: F401
    BucketRef,
    Connection,
    DataStore,
    EarlyStop,
    Framework,
    Manifest,
    SecretRef,
    Sweep,
    SweepMetric,
    SweepParameter,
)
from .parser import (  # noqa: F401
    ManifestError,
    ManifestResult,
    Problem,
    check_manifest,
    load_manifest,
    parse_manifest,
)
from .units import MEMORY_UNITS, format_duration, memory_to_kubernetes, parse_duration, parse_memory  # noqa: F401
