"""The learner's image: a built-in table of framework images, overridable per version in [frameworks].

A manifest names a framework and, optionally, a version (`framework: {name: pytorch, version: "2.6"}`).
On a cluster the run needs a container image for it. FfDL and WML shipped one image per supported
framework version; so does dlaas-tui: `DEFAULT_IMAGES` below, CUDA and CPU variants, the CPU one
chosen when the run asks for no GPU (`gpus: 0`). docs/kubernetes.md prints the same table.

Resolution, for framework NAME and version V:
  1. the config's `[frameworks.NAME]` entry for V, if it has an `image` (`cpu_image` for CPU runs;
     without one, `image` serves both);
  2. the built-in table's entry for V;
  3. otherwise refused, listing the versions known for NAME (or the frameworks known at all).
V matches a key exactly, by its major.minor (`2.6.0` -> `2.6`), or as a prefix (`2` -> the newest
2.x). No version: the config's one version for NAME if it maps exactly one with an image, else the
newest version known.

The images are the projects' own: `pytorch/pytorch` (there is no official CPU-only PyTorch image;
the runtime image runs on CPU nodes too, it is only larger), `tensorflow/tensorflow` (`-gpu` for
CUDA) and `python` (slim; bring CUDA wheels yourself, the NVIDIA runtime mounts the driver). Every
image runs the learner's `sh` wrapper as uid 1000 with a read-only root filesystem (HOME=/tmp).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.errors import BadInput
from backend.runs import ErrorCode

if TYPE_CHECKING:
    from backend.config import Config
    from backend.manifest.model import Manifest


@dataclass(frozen=True)
class FrameworkImage:
    cuda: str
    cpu: str


def _pytorch(tag: str) -> FrameworkImage:
    image = f"pytorch/pytorch:{tag}"
    return FrameworkImage(cuda=image, cpu=image)


def _tensorflow(version: str) -> FrameworkImage:
    return FrameworkImage(cuda=f"tensorflow/tensorflow:{version}-gpu", cpu=f"tensorflow/tensorflow:{version}")


def _python(version: str) -> FrameworkImage:
    image = f"python:{version}-slim"
    return FrameworkImage(cuda=image, cpu=image)


DEFAULT_IMAGES: dict[str, dict[str, FrameworkImage]] = {
    "pytorch": {
        "2.5": _pytorch("2.5.1-cuda12.4-cudnn9-runtime"),
        "2.6": _pytorch("2.6.0-cuda12.4-cudnn9-runtime"),
        "2.7": _pytorch("2.7.1-cuda12.8-cudnn9-runtime"),
        "2.8": _pytorch("2.8.0-cuda12.8-cudnn9-runtime"),
    },
    "tensorflow": {
        "2.17": _tensorflow("2.17.0"),
        "2.18": _tensorflow("2.18.0"),
        "2.19": _tensorflow("2.19.0"),
        "2.20": _tensorflow("2.20.0"),
    },
    "python": {
        "3.11": _python("3.11"),
        "3.12": _python("3.12"),
        "3.13": _python("3.13"),
    },
}


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.\-]", version))


def _newest(versions: list[str]) -> str:
    return max(versions, key=_version_key)


def known_versions(name: str, config: Config) -> dict[str, tuple[str, str]]:
    """Version -> (CUDA image, CPU image) for a framework: the built-in table under the config's."""
    out = {v: (img.cuda, img.cpu) for v, img in DEFAULT_IMAGES.get(name, {}).items()}
    for version, entry in (config.frameworks.get(name) or {}).items():
        if entry.image:
            out[version] = (entry.image, entry.cpu_image or entry.image)
        elif entry.cpu_image and version in out:
            out[version] = (out[version][0], entry.cpu_image)
    return out


def _match(version: str, known: dict[str, tuple[str, str]]) -> str | None:
    if version in known:
        return version
    parts = version.split(".")
    if len(parts) > 2 and ".".join(parts[:2]) in known:
        return ".".join(parts[:2])
    extending = [v for v in known if v.startswith(version + ".")]
    return _newest(extending) if extending else None


def framework_image(manifest: Manifest, config: Config) -> str:
    """The learner's image for this manifest (the CPU variant when it asks for no GPU)."""
    fw = manifest.framework
    known = known_versions(fw.name, config)
    if not known:
        names = sorted({*DEFAULT_IMAGES, *(n for n in config.frameworks if known_versions(n, config))})
        raise BadInput(f"framework {fw.name!r} has no image: known frameworks {', '.join(names)} "
                       f"(or add [frameworks.{fw.name}] \"VERSION\" = {{ image = \"...\" }} to the config)",
                       code=ErrorCode.NEVER_FITS.value)
    if fw.version:
        version = _match(str(fw.version), known)
        if version is None:
            listed = ", ".join(sorted(known, key=_version_key))
            raise BadInput(f"framework {fw.name} {fw.version}: no such version; known versions: {listed} "
                           f"(or map it under [frameworks.{fw.name}] in the config)",
                           code=ErrorCode.NEVER_FITS.value)
    else:
        mapped = [v for v, e in (config.frameworks.get(fw.name) or {}).items() if e.image]
        version = mapped[0] if len(mapped) == 1 else _newest(list(known))
    cuda, cpu = known[version]
    return cuda if manifest.gpus > 0 else cpu


def table_markdown() -> str:
    """The built-in table as docs/kubernetes.md prints it (a test keeps the two the same)."""
    rows = ["| framework | version | CUDA image (`gpus > 0`) | CPU image (`gpus: 0`) |", "|---|---|---|---|"]
    for name, versions in DEFAULT_IMAGES.items():
        for version in sorted(versions, key=_version_key):
            img = versions[version]
            rows.append(f"| {name} | {version} | `{img.cuda}` | `{img.cpu}` |")
    return "\n".join(rows)
