"""Where dlaas-tui keeps its files.

`DLAAS_HOME=DIR` puts config, state and the local object store under DIR (every test uses one);
otherwise the platform's user config and data dirs are used. Folders that hold secrets or state are
created 0700, files 0600.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .records import FrozenRecord

APP_NAME = "dlaas-tui"


class Paths(FrozenRecord):
    config_dir: Path
    state_dir: Path
    store_dir: Path
    cache_dir: Path
    _fields = ("config_dir", "state_dir", "store_dir", "cache_dir")

    def __init__(self, config_dir: Path, state_dir: Path, store_dir: Path, cache_dir: Path) -> None:
        self._set(config_dir=config_dir, state_dir=state_dir, store_dir=store_dir, cache_dir=cache_dir)

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def db_file(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def runs_dir(self) -> Path:
        """Per-run working folders of the local engine (model, data view, results, logs)."""
        return self.state_dir / "runs"

    @property
    def ui_state_file(self) -> Path:
        """UI choices that are not config (the theme, command history)."""
        return self.state_dir / "ui.json"


def get_paths() -> Paths:
    home = os.environ.get("DLAAS_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        if not root.exists():  # whichever of config, state, store or cache comes first: 0700
            try:
                private_dir(root)
            except OSError:  # not ours to make here: the first write under it says why
                pass
        return Paths(root, root / "state", root / "store", root / "cache")
    config, data, cache = _user_dirs()
    return Paths(config, data, data / "store", cache)


def _user_dirs() -> tuple[Path, Path, Path]:
    """The user's config, data and cache folders for the app. On Linux with an absolute HOME these
    are the XDG base directories, read here as platformdirs reads them (an XDG variable counts when
    it holds an absolute path): every command finds its config this way, and importing platformdirs
    costs ~10 ms. Anything else is platformdirs' to answer."""
    home = os.environ.get("HOME", "")
    if sys.platform.startswith("linux") and os.path.isabs(home):
        def xdg(variable: str, default: str) -> Path:
            value = os.environ.get(variable, "")
            return Path(value if os.path.isabs(value) else os.path.expanduser(default), APP_NAME)

        return xdg("XDG_CONFIG_HOME", "~/.config"), xdg("XDG_DATA_HOME", "~/.local/share"), \
            xdg("XDG_CACHE_HOME", "~/.cache")
    import platformdirs

    return (Path(platformdirs.user_config_dir(APP_NAME)), Path(platformdirs.user_data_dir(APP_NAME)),
            Path(platformdirs.user_cache_dir(APP_NAME)))


def private_dir(path: Path) -> Path:
    """Create `path` readable by the user alone; any folder above it that this creates is 0700 too
    (a DLAAS_HOME the app makes is nobody else's to list), folders that already exist stay as they are."""
    missing = []
    p = Path(path)
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: theirs to set
            continue
        os.chmod(d, 0o700)  # mkdir's mode is cut by the umask
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Atomically write a file that only the user can read (0600)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def resource_dir(name: str) -> Path:
    """A folder shipped with the app (`themes`, `samples`), in a checkout or an installed wheel."""
    import importlib.util

    spec = importlib.util.find_spec("dlaas_tui")  # locates the package without importing the UI
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / name
