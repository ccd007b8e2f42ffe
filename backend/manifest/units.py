"""Memory sizes and durations as manifests write them: backend/units.py, which the config (read
on every command, without the manifest's pydantic models) shares."""
from ..units import (  # noqa: F401
    MEMORY_UNITS,
    UNITS_TEXT,
    format_duration,
    memory_to_kubernetes,
    parse_duration,
    parse_memory,
)
