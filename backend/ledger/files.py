"""Where a home's ledgers live: the local engine's (`paths.db_file`) and one file per kubernetes
profile (`<state>/kubernetes/<profile>.db`), which the agent watches and notify reads."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote


def ledger_dir(paths: Any) -> Path:
    return Path(paths.state_dir) / "kubernetes"


def ledger_path(paths: Any, profile: str) -> Path:
    # profile names come from the user's config: quoted, so none can name a path elsewhere
    return ledger_dir(paths) / f"{quote(profile, safe='')}.db"


def profiles_with_ledgers(paths: Any) -> list[str]:
    from urllib.parse import unquote

    folder = ledger_dir(paths)
    if not folder.is_dir():
        return []
    return sorted(unquote(p.stem) for p in folder.glob("*.db"))
