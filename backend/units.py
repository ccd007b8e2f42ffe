"""Memory sizes and durations as manifests and the config write them (standard library only).

FfDL silently turned a memory value it could not read into 512 MB; here anything outside the listed
units is an error. FfDL's `Mb`/`Gb` are decimal megabytes/gigabytes (as FfDL read them), not bits.
"""
from __future__ import annotations

import difflib
import re

# unit -> (bytes per unit, Kubernetes quantity suffix)
MEMORY_UNITS: dict[str, tuple[int, str]] = {
    "MB": (1000**2, "M"),
    "MiB": (1024**2, "Mi"),
    "GB": (1000**3, "G"),
    "GiB": (1024**3, "Gi"),
    "TB": (1000**4, "T"),
    "TiB": (1024**4, "Ti"),
    "Mb": (1000**2, "M"),
    "Gb": (1000**3, "G"),
}

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DURATION_FULL_RE = re.compile(r"^(?:\d+(?:\.\d+)?[dhms])+$")
_DURATION_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
UNITS_TEXT = "MB, MiB, GB, GiB, TB, TiB, or FfDL's Mb/Gb"


def _split_memory(text: str) -> tuple[str, str]:
    match = _MEMORY_RE.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a size; write a number and a unit such as 4GiB or 512MB")
    number, unit = match.groups()
    if not unit:
        raise ValueError(f"{text!r} has no unit; write one of {UNITS_TEXT}, e.g. {number}GiB")
    if unit not in MEMORY_UNITS:
        close = difflib.get_close_matches(unit, MEMORY_UNITS, n=1, cutoff=0.3)
        hint = f", did you mean {number}{close[0]}?" if close else ""
        raise ValueError(f"unknown memory unit {unit!r} in {text!r} (use {UNITS_TEXT}){hint}")
    return number, unit


def parse_memory(value: object) -> int:
    """`1.5GiB` -> bytes. Raises ValueError with a message fit for the user."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a size such as 4GiB, got {type(value).__name__}")
    number, unit = _split_memory(str(value))
    size = float(number) * MEMORY_UNITS[unit][0]
    if size <= 0:
        raise ValueError(f"memory must be more than zero, got {value!r}")
    return int(round(size))


def memory_to_kubernetes(value: str) -> str:
    """`4GiB` -> `4Gi`, `512MB` -> `512M`, `1Gb` -> `1G`; decimals become whole smaller units."""
    number, unit = _split_memory(value)
    suffix = MEMORY_UNITS[unit][1]
    if "." not in number or float(number).is_integer():
        return f"{int(float(number))}{suffix}"
    # Kubernetes accepts decimals, but `1.5Gi` reads oddly in kubectl output; whole bytes never lie.
    return str(parse_memory(value))


def parse_duration(value: object) -> int:
    """`90m`, `2h`, `30s`, `1h30m`, `1d` -> whole seconds."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a duration such as 90m or 2h, got {type(value).__name__}")
    text = str(value).strip().replace(" ", "")
    if isinstance(value, (int, float)) or re.fullmatch(r"\d+(?:\.\d+)?", text):
        raise ValueError(f"{value!r} has no unit; write e.g. {text}s, 90m, 2h or 1h30m")
    if not _DURATION_FULL_RE.match(text):
        raise ValueError(f"cannot read {value!r} as a duration; write e.g. 90m, 2h, 30s or 1h30m")
    seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in _DURATION_RE.findall(text))
    if seconds < 1:
        raise ValueError(f"max_duration must be at least 1s, got {value!r}")
    return int(round(seconds))


def format_duration(seconds: int) -> str:
    """Inverse of parse_duration for display: 5400 -> `1h30m`."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
