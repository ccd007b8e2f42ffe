"""What the config's two readers (backend/config.py, backend/config_schema.py) share: the masked
`Secret` string, the "did you mean" hint and what a profile's tables imply. Standard library only."""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Any


MASK = "****"


class Secret(str):
    """A string whose repr and str-in-containers are masked; `.reveal()` gives the value."""

    def __repr__(self) -> str:  # pragma: no cover - trivial
        return f"Secret({MASK!r})"

    def reveal(self) -> str:
        return str.__str__(self)

    def masked(self) -> str:
        return MASK if self else ""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: MASK if v else "", when_used="always"
            ),
        )


def did_you_mean(word: str, options: list[str]) -> str:
    import difflib  # only for a wrong name: every command reads the config

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f", did you mean {close[0]!r}?" if close else ""


def implied_by_tables(data: dict[str, Any]) -> dict[str, Any]:
    """A profile that gives a `kubernetes` table runs there, unless it says otherwise, and a
    cluster's runs store in S3 (pods cannot reach a local store): `kubernetes = {...}` plus
    `s3 = {...}` is a whole profile."""
    data = dict(data)
    if "kubernetes" in data and "scheduler" not in data:
        data["scheduler"] = "kubernetes"
    if data.get("scheduler") == "kubernetes" and "store" not in data:
        data["store"] = "s3"
    return data
