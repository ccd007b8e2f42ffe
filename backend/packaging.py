"""Model code archives: zip a model folder for submission, unzip one safely into a run's MODEL_DIR.

Zipping honours the folder's `.gitignore` (git's own rules, via pathspec's GitIgnoreSpec) and always skips `.git`,
`__pycache__` and `.venv`, so a submission carries source, not environments. Both directions refuse
what could hurt: an archive over the size cap or one that unpacks to more than its unpacked cap, an
entry whose path would land outside the target (absolute, `..`, a symlink), and a symbolic link in
the model folder to a file outside it (it would carry that file, `/etc/passwd`, into the archive) -
each with C102 and the offending name. The unpacked cap is the profile's `max_model_unpacked_mb`,
else `max_model_mb`: a zip bomb cannot unpack to more than the user allowed to be submitted.
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .errors import BadInput
from .runs import ErrorCode

ALWAYS_SKIPPED = frozenset({".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"})


class ArchiveError(BadInput):
    """A model archive that is unsafe or too big (C102): the user's input, refused (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.BAD_MODEL_ARCHIVE.value)


class _NothingIgnored:
    @staticmethod
    def match_file(_path: str) -> bool:
        return False


def _ignore_spec(root: Path):
    gitignore = root / ".gitignore"
    if not gitignore.is_file():  # the common case: no need to import pathspec (~45 ms a submit)
        return _NothingIgnored()
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(gitignore.read_text(errors="replace").splitlines())


def unpacked_cap(profile) -> int:
    """Bytes a model archive may unpack to under a profile (`max_model_unpacked_mb`, else
    `max_model_mb`)."""
    mb = getattr(profile, "max_model_unpacked_mb", None) or profile.max_model_mb
    return mb * 1024 * 1024


def model_files(root: Path) -> list[tuple[Path, str]]:
    """(path, archive name) for each file a submission of `root` carries, in a stable order.

    A symbolic link to a file inside `root` is carried as that file; one to a file outside is refused
    (C102, naming the link and its target); a dangling one is skipped."""
    spec = _ignore_spec(root)
    real_root = Path(root).resolve()
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        keep = []
        for d in sorted(dirnames):
            rel = (rel_dir / d).as_posix()
            if d in ALWAYS_SKIPPED or spec.match_file(rel + "/"):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            path = Path(dirpath) / f
            rel = (rel_dir / f).as_posix()
            if spec.match_file(rel) or path.is_symlink() and not path.exists():
                continue
            if not path.is_file():
                continue
            if path.is_symlink():
                target = path.resolve()
                if real_root not in target.parents:
                    raise ArchiveError(
                        f"{root}: {rel!r} is a symbolic link to {target}, outside the model folder; "
                        "copy the file in, or remove the link (or list it in .gitignore)")
            out.append((path, rel))
    return out


def zip_model(src: Path, dest: Path, *, max_bytes: int, max_unpacked: int | None = None) -> int:
    """Zip folder `src` into `dest` (temp + rename); returns the archive size. C102 over `max_bytes`
    zipped, or over `max_unpacked` (default `max_bytes`) as files."""
    src = Path(src)
    if not src.is_dir():
        raise BadInput(f"{src}: the model must be a folder or a .zip file")
    files = model_files(src)
    raw = sum(p.stat().st_size for p, _ in files)
    cap = max_bytes if max_unpacked is None else max_unpacked
    if raw > cap:  # it could never be unpacked: fail before zipping
        raise ArchiveError(f"{src}: model folder holds {raw} bytes, over the {cap} byte unpacked cap")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path, name in files:
                zf.write(path, name)
                if tmp.stat().st_size > max_bytes:
                    raise ArchiveError(f"{src}: model archive is over the {max_bytes} byte cap")
        size = tmp.stat().st_size
        if size > max_bytes:
            raise ArchiveError(f"{src}: model archive is {size} bytes, over the {max_bytes} byte cap")
        os.replace(tmp, dest)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def check_zip(path: Path, *, max_bytes: int, max_unpacked: int | None = None) -> None:
    """Refuse a given .zip that is too big (zipped, or unpacked past `max_unpacked`, default
    `max_bytes`), not a zip, or holds an unsafe entry (C102)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ArchiveError(f"{path}: model archive is {size} bytes, over the {max_bytes} byte cap")
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path}: not a zip archive")
    cap = max_bytes if max_unpacked is None else max_unpacked
    with zipfile.ZipFile(path) as zf:
        total = 0
        for info in zf.infolist():
            _safe_name(info)
            total += info.file_size
        if total > cap:
            raise ArchiveError(f"{path}: model archive expands to {total} bytes, over the {cap} byte "
                               "unpacked cap")


def _safe_name(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    pure = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in pure.parts or "\x00" in name:
        raise ArchiveError(f"model archive entry {info.filename!r} would land outside MODEL_DIR")
    mode = (info.external_attr >> 16) & 0o170000
    if mode == stat.S_IFLNK:
        raise ArchiveError(f"model archive entry {info.filename!r} is a symbolic link")
    return pure


def safe_unzip(path: Path, target: Path, *, max_bytes: int | None = None) -> int:
    """Extract `path` into `target`; any entry that would escape it fails the whole unzip (C102).

    Every name is checked before anything is written, so a refused archive leaves nothing behind.
    `max_bytes` caps the total uncompressed size (a zip bomb guard). Returns the number of files.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path.name}: not a zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        total = 0
        plan = []
        for info in infos:
            pure = _safe_name(info)
            dest = (root / pure).resolve()
            if dest != root and root not in dest.parents:
                raise ArchiveError(f"model archive entry {info.filename!r} would land outside MODEL_DIR")
            total += info.file_size
            plan.append((info, dest))
        if max_bytes is not None and total > max_bytes:
            raise ArchiveError(f"model archive expands to {total} bytes, over the {max_bytes} cap")
        count = 0
        for info, dest in plan:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if mode & 0o100:
                os.chmod(dest, 0o755)
            count += 1
        return count
