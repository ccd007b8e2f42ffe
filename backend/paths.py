"""Where dlaas-tui keeps its files.

`DLAAS_HOME=DIR` puts config, state and the local object store under DIR (every test uses one);
otherwise the platform's user config and data dirs are used. Folders that hold secrets or state are
created 0700, files 0600.
"""
from __future__ import annotations

import os
import sys

from .records import FrozenRecord

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path

APP_NAME = "dlaas-tui"


def clean(path: str) -> str:
    """`str(Path(path))` without pathlib: the same spelling of the same path (repeated slashes and
    `.` parts dropped, `..` kept, a trailing slash dropped, `//` kept at the start as POSIX has it)."""
    root = "//" if path[:2] == "//" and path[2:3] != "/" else "/" if path[:1] == "/" else ""
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


class _AsPath:
    """A folder of Paths, held as a str (`<name>_str`) and handed out as a Path made on first use:
    pathlib (with urllib.parse, ipaddress, fnmatch and ntpath: ~4 ms) is not imported by a command
    that reads the state through the `_str` forms alone (`runs`)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None):
        if obj is None:
            return self
        from pathlib import Path

        value = obj.__dict__[self.name] = Path(obj.__dict__[f"{self.name}_str"])
        return value


class Paths(FrozenRecord):
    """The app's folders, as Paths (`state_dir`) and as strs (`state_dir_str`, the same path spelled
    as `str(state_dir)`: what the listing's path uses)."""

    config_dir: Path = _AsPath()  # type: ignore[assignment]
    state_dir: Path = _AsPath()  # type: ignore[assignment]
    store_dir: Path = _AsPath()  # type: ignore[assignment]
    cache_dir: Path = _AsPath()  # type: ignore[assignment]
    _fields = ("config_dir", "state_dir", "store_dir", "cache_dir")

    def __init__(self, config_dir: Path | str, state_dir: Path | str, store_dir: Path | str,
                 cache_dir: Path | str) -> None:
        self._set(config_dir_str=clean(os.fspath(config_dir)), state_dir_str=clean(os.fspath(state_dir)),
                  store_dir_str=clean(os.fspath(store_dir)), cache_dir_str=clean(os.fspath(cache_dir)))

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def config_file_str(self) -> str:
        return os.path.join(self.config_dir_str, "config.toml")

    @property
    def db_file(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def db_file_str(self) -> str:
        return os.path.join(self.state_dir_str, "state.db")

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
        root, exists = _resolve(_expanduser(clean(home)))
        if not exists:  # whichever of config, state, store or cache comes first: 0700
            try:
                private_dir(root)
            except OSError:  # not ours to make here: the first write under it says why
                pass
        return Paths(root, os.path.join(root, "state"), os.path.join(root, "store"), os.path.join(root, "cache"))
    config, data, cache = _user_dir_strs()
    return Paths(config, data, os.path.join(data, "store"), cache)


def _expanduser(path: str) -> str:
    """`Path(path).expanduser()` of a clean `path`, as a str."""
    if path[:1] != "~":
        return path
    first, _, rest = path.partition("/")
    home = os.path.expanduser(first)
    if home[:1] == "~":
        raise RuntimeError("Could not determine home directory.")
    return clean(os.path.join(home, rest) if rest else home)


def _resolve(path: str) -> tuple[str, bool]:
    """`Path(path).resolve()` as a str, and whether it exists (`.exists()`), with one stat: a
    symlink loop is a RuntimeError, a stat refused (EACCES) raises, as they do there."""
    real = os.path.realpath(path)
    try:
        os.stat(real)
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            raise RuntimeError(f"Symlink loop from {exc.filename!r}") from None
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EBADF):
            raise
        return real, False
    return real, True


def _user_dirs() -> tuple[Path, Path, Path]:
    """The user's config, data and cache folders for the app (see `_user_dir_strs`)."""
    from pathlib import Path

    config, data, cache = _user_dir_strs()
    return Path(config), Path(data), Path(cache)


def _user_dir_strs() -> tuple[str, str, str]:
    """The user's config, data and cache folders for the app. On Linux with an absolute HOME these
    are the XDG base directories, read here as platformdirs reads them (an XDG variable counts when
    it holds an absolute path): every command finds its config this way, and importing platformdirs
    costs ~10 ms. Anything else is platformdirs' to answer."""
    home = os.environ.get("HOME", "")
    if sys.platform.startswith("linux") and os.path.isabs(home):
        def xdg(variable: str, default: str) -> str:
            value = os.environ.get(variable, "")
            return clean(os.path.join(value if os.path.isabs(value) else os.path.expanduser(default), APP_NAME))

        return xdg("XDG_CONFIG_HOME", "~/.config"), xdg("XDG_DATA_HOME", "~/.local/share"), \
            xdg("XDG_CACHE_HOME", "~/.cache")
    import platformdirs

    return (clean(platformdirs.user_config_dir(APP_NAME)), clean(platformdirs.user_data_dir(APP_NAME)),
            clean(platformdirs.user_cache_dir(APP_NAME)))


def private_dir(path: Path | str) -> Path | str:
    """Create `path` readable by the user alone; any folder above it that this creates is 0700 too
    (a DLAAS_HOME the app makes is nobody else's to list), folders that already exist stay as they are.
    Returns `path` (a Path or a str, as given)."""
    missing = []
    p = clean(os.fspath(path))
    while not os.path.lexists(p) and p != _parent(p):
        missing.append(p)
        p = _parent(p)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # made meanwhile by another process: theirs to set
            continue
        os.chmod(d, 0o700)  # mkdir's mode is cut by the umask
    os.chmod(path, 0o700)
    return path


def exists(path: Path | str) -> bool:
    """`Path(path).exists()`, without pathlib: False where there is nothing (or a symlink loop), an
    OSError where the answer cannot be had (EACCES)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        import errno

        if exc.errno in (errno.EBADF, errno.ELOOP):
            return False
        raise
    except ValueError:  # a NUL in the name
        return False
    return True


def parent_of(path: Path | str) -> str:
    """`str(Path(path).parent)`, without pathlib."""
    return _parent(clean(os.fspath(path)))


def _parent(path: str) -> str:
    """`str(Path(path).parent)` of a clean `path`."""
    head, sep, tail = path.rpartition("/")
    if not sep:
        return "."
    if not tail:  # "/" or "//"
        return path
    return head + "/" if head in ("", "/") else head


def write_private(path: Path | str, data: str | bytes) -> None:
    """Atomically write a file that only the user can read (0600)."""
    path = clean(os.fspath(path))
    private_dir(_parent(path))
    tmp = os.path.join(_parent(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
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
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def resource_dir(name: str) -> Path:
    """A folder shipped with the app (`themes`, `samples`), in a checkout or an installed wheel."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("dlaas_tui")  # locates the package without importing the UI
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / name
