"""The TOML config: profiles, tiers, prices, priorities, frameworks, secrets, key bindings, notify.

No file at all is valid: it means the `local` profile with the defaults below. Unknown keys are
errors that name the file, the table, the key and the closest known key. The file may hold secrets,
so it is written 0600 in a 0700 folder. Secret values are wrapped in `Secret` so that they are
masked wherever a config or profile is printed.

Every command and the agent read the config, so reading it imports no pydantic (~0.15 s and ~12 MB):
the classes below are plain frozen objects with pydantic's surface (`model_copy`, `model_dump`,
`model_dump_json`, `model_validate`), and a small reader accepts what is plainly valid (known keys,
values of exactly the declared type within their bounds). Anything else (a wrong key, a value out
of bounds, a value pydantic would coerce such as "3" for an int) goes to the pydantic models in
backend/config_schema.py, so errors and coercions are pydantic's own, word for word.
"""
from __future__ import annotations

import json
import marshal
import os
from collections.abc import Callable

from .config_types import MASK, Secret, did_you_mean, implied_by_tables  # noqa: F401  (MASK and Secret: re-exported)
from .errors import ConfigError, NotFound
from .paths import Paths, get_paths, write_private

# -- the fast reader: each check returns the value as pydantic would store it, or declines -------
class _Declined(Exception):
    """Not plainly valid: pydantic (config_schema.py) decides, and words any error."""


TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, ClassVar

    Check = Callable[[Any], Any]


def _str(v: Any) -> str:
    if type(v) is str:
        return v
    raise _Declined


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise _Declined


def _int(ge: int | None = None, le: int | None = None) -> Check:
    def check(v: Any) -> int:
        if type(v) is int and (ge is None or v >= ge) and (le is None or v <= le):
            return v
        raise _Declined

    return check


def _float(ge: float | None = None, gt: float | None = None, le: float | None = None) -> Check:
    def check(v: Any) -> float:
        if type(v) not in (int, float):
            raise _Declined
        f = float(v)
        if (ge is not None and not f >= ge) or (gt is not None and not f > gt) or (le is not None and not f <= le):
            raise _Declined  # NaN included: every comparison with it is false
        return f

    check.as_float = "value"  # type: ignore[attr-defined]  # JSON dumps write it as a float
    return check


def _literal(*choices: str) -> Check:
    def check(v: Any) -> str:
        if type(v) is str and v in choices:
            return v
        raise _Declined

    return check


def _secret(v: Any) -> Secret:
    if type(v) in (str, Secret):
        return Secret(v)
    raise _Declined


def _optional(check: Check) -> Check:
    def read(v: Any) -> Any:
        return None if v is None else check(v)

    read.as_float = getattr(check, "as_float", None)  # type: ignore[attr-defined]
    return read


def _dict_of(check: Check) -> Check:
    def read(v: Any) -> dict[str, Any]:
        if type(v) is not dict or any(type(k) is not str for k in v):
            raise _Declined
        return {k: check(x) for k, x in v.items()}

    if getattr(check, "as_float", None) == "value":
        read.as_float = "dict"  # type: ignore[attr-defined]
    return read


def _str_or_strs(v: Any) -> str | list[str]:
    if type(v) is str:
        return v
    if type(v) is list and all(type(x) is str for x in v):
        return list(v)
    raise _Declined


def _model(cls: type[_Lean]) -> Check:
    def check(v: Any) -> Any:
        if type(v) is cls:
            return v
        if type(v) is dict:
            return cls._build(cls._fast(v))
        raise _Declined

    return check


class _Lean:
    """A frozen record with the slice of pydantic's BaseModel surface the program uses."""

    _fields: ClassVar[dict[str, tuple[Check, Any]]] = {}
    _excluded: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **data: Any) -> None:
        try:
            values = self._fast(data)
        except _Declined:
            values = self._slow(data)  # raises pydantic's ValidationError, as these classes did
        object.__setattr__(self, "__dict__", values)

    # -- reading ------------------------------------------------------------------------------
    @classmethod
    def _build(cls, values: dict[str, Any]) -> Any:
        obj = object.__new__(cls)
        object.__setattr__(obj, "__dict__", values)
        return obj

    @classmethod
    def _before(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data

    @classmethod
    def _after(cls, values: dict[str, Any]) -> None:
        """Field rules beyond type and bounds; raise ValueError (or _Declined) to decline."""

    @classmethod
    def _fast(cls, data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise _Declined
        data = cls._before(data)
        fields = cls._fields
        if not data.keys() <= fields.keys():
            raise _Declined
        values = {}
        for name, (check, default) in fields.items():
            if name in data:
                values[name] = check(data[name])
            else:
                values[name] = dict(default) if type(default) is dict else default
        try:
            cls._after(values)
        except ValueError:
            raise _Declined from None
        return values

    @classmethod
    def _slow(cls, data: Any) -> dict[str, Any]:
        from . import config_schema

        model = getattr(config_schema, cls.__name__)
        return _lean_values(cls, model.model_validate(_plain(data)))

    # -- pydantic's surface -------------------------------------------------------------------
    @classmethod
    def model_validate(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        try:
            return cls._build(cls._fast(data))
        except _Declined:
            return cls._build(cls._slow(data))

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        """A copy with `update` applied, unvalidated (as pydantic's `model_copy`)."""
        return self._build({**self.__dict__, **(update or {})})

    def model_dump(self, *, mode: str = "python", exclude: set[str] | None = None) -> dict[str, Any]:
        """The fields as plain data, secrets masked (their serializer masks in every mode)."""
        skip = self._excluded | (exclude or set())
        out = {k: _dump(v, mode) for k, v in self.__dict__.items() if k not in skip}
        if mode == "json":  # a float field holding an int (a default, a copy's update) is written 20.0
            for k, (check, _default) in self._fields.items():
                kind = getattr(check, "as_float", None)
                if kind == "value" and type(out.get(k)) is int:
                    out[k] = float(out[k])
                elif kind == "dict" and k in out:
                    out[k] = {n: float(x) if type(x) is int else x for n, x in out[k].items()}
        return out

    def model_dump_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False,
                          separators=None if indent is not None else (",", ":"))

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen: use model_copy(update=...)")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.model_fields = dict.fromkeys(cls._fields)  # names, in order (as `list(model_fields)`)
        _LEAN[cls.__name__] = cls


_LEAN: dict[str, type[_Lean]] = {}


def _dump(v: Any, mode: str) -> Any:
    if isinstance(v, Secret):
        return v.masked()
    if isinstance(v, _Lean):
        return v.model_dump(mode=mode)
    if isinstance(v, dict):
        return {k: _dump(x, mode) for k, x in v.items()}
    if isinstance(v, list):
        return [_dump(x, mode) for x in v]
    return v


def _plain(v: Any) -> Any:
    """Input for the pydantic models: our records as the dicts they were read from."""
    if isinstance(v, _Lean):
        return {k: _plain(x) for k, x in v.__dict__.items()}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _lean_values(cls: type[_Lean], obj: Any) -> dict[str, Any]:
    """A validated pydantic model's fields, its nested models turned into our records."""
    return {name: _lean_of(getattr(obj, name)) for name in cls._fields}


def _lean_of(v: Any) -> Any:
    lean = _LEAN.get(type(v).__name__) if hasattr(type(v), "model_fields") else None
    if lean is not None:
        return lean._build(_lean_values(lean, v))
    if isinstance(v, dict):
        return {k: _lean_of(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_lean_of(x) for x in v]
    return v


# -- the config's tables ---------------------------------------------------------------------------
# Field order, names, defaults and bounds are config_schema.py's (tests/unit/test_config_lean.py).
# Defaults are stored as written (pydantic does not validate them): `connect_timeout` is 10, not 10.0.
class Budget(_Lean):
    _fields = {
        "daily_usd": (_optional(_float(ge=0)), None),
        "monthly_usd": (_optional(_float(ge=0)), None),
    }


class S3Settings(_Lean):
    _fields = {
        "endpoint_url": (_optional(_str), None),
        "region": (_optional(_str), None),
        "addressing_style": (_optional(_literal("path", "virtual", "auto")), None),
        "aws_profile": (_optional(_str), None),
        "access_key_id": (_optional(_secret), None),
        "secret_access_key": (_optional(_secret), None),
        "verify_tls": (_bool, True),
        "max_attempts": (_int(ge=1, le=20), 5),
        "connect_timeout": (_float(gt=0), 10),
        "read_timeout": (_float(gt=0), 60),
        "multipart_threshold_mb": (_int(ge=5), 16),
        "multipart_chunksize_mb": (_int(ge=5), 8),  # bench/s3_levers.py: 8 MiB x 16 beat 16 x 32
        "max_concurrency": (_int(ge=1, le=256), 32),  # measured: 32 beat 16 on uploads
    }

    @property
    def effective_addressing_style(self) -> str:
        if self.addressing_style:
            return self.addressing_style
        return "path" if self.endpoint_url else "auto"


class KubernetesSettings(_Lean):
    _fields = {
        "context": (_optional(_str), None),
        "kubeconfig": (_optional(_str), None),
        "namespace": (_str, "default"),
        "queue": (_str, "default"),
        "s3_secret": (_optional(_str), None),
        "uploader_image": (_str, "rclone/rclone:1.68"),
        "gpu_product_label": (_str, "nvidia.com/gpu.product"),
        "ttl_seconds_after_finished": (_int(ge=0), 3600),
        "termination_grace_seconds": (_int(ge=1), 120),
        "startup_allowance_seconds": (_int(ge=0), 900),
        # how long a start-up error (ErrImagePull, CreateContainerConfigError, pods refused) may last
        # before the run fails with S302 and its Job is deleted, giving its quota back
        "start_failure_seconds": (_int(ge=0), 300),
        # /work (data, model, results) is sized as the data + model + this; requested as ephemeral-storage
        "work_headroom_gib": (_int(ge=1), 20),
        # false: no ephemeral-storage request (for a ClusterQueue that does not cover it); the sizeLimit stays
        "request_work_storage": (_bool, True),
        "service_account": (_optional(_str), None),
    }


class Profile(_Lean):
    _fields = {
        "name": (_str, "local"),
        "scheduler": (_literal("local", "kubernetes", "fake"), "local"),
        "store": (_literal("local", "s3"), "local"),
        "tier": (_str, "unlimited"),
        "cpu_slots": (_int(ge=1, le=256), 1),
        "cpus": (_optional(_int(ge=1, le=4096)), None),  # cores runs may hold (default: all the agent may use)
        "memory": (_optional(_str), None),  # memory runs may hold, e.g. "16GiB" (default: the machine's MemTotal)
        "read_only": (_bool, False),
        "queue_policy": (_literal("fifo", "best-effort"), "fifo"),
        "max_model_mb": (_int(ge=1), 500),
        "max_model_unpacked_mb": (_optional(_int(ge=1)), None),  # None: max_model_mb
        "budget": (_model(Budget), Budget()),
        "s3": (_model(S3Settings), S3Settings()),
        "kubernetes": (_model(KubernetesSettings), KubernetesSettings()),
    }

    @classmethod
    def _before(cls, data: dict[str, Any]) -> dict[str, Any]:
        return implied_by_tables(data)

    @classmethod
    def _after(cls, values: dict[str, Any]) -> None:
        if values["memory"] is not None:
            from .units import parse_memory

            parse_memory(values["memory"])


class FrameworkVersion(_Lean):
    _fields = {
        "python": (_optional(_str), None),
        "image": (_optional(_str), None),  # on a cluster: overrides the built-in image (kubernetes/images.py)
        "cpu_image": (_optional(_str), None),  # for runs with `gpus: 0`; without it `image` serves both
    }


class Billing(_Lean):
    _fields = {"minimum_seconds": (_int(ge=0), 60)}


class Cache(_Lean):
    _fields = {"max_gb": (_float(gt=0), 20)}


class NotifySettings(_Lean):
    """Word when a run or a whole sweep (experiment) ends: sent by the agent, so it works with the
    TUI closed. `command` runs without a shell, the run's details in DLAAS_* environment variables;
    `webhook` receives a JSON POST. Both are bounded by `timeout_seconds`; failures are logged."""

    _fields = {
        "command": (_optional(_str_or_strs), None),
        "webhook": (_optional(_str), None),
        "timeout_seconds": (_float(gt=0, le=120), 10),
        "runs": (_bool, True),  # every run that ends
        "sweeps": (_bool, True),  # every experiment whose last active run ends
        "terminal": (_literal("auto", "osc9", "osc777", "bell", "off"), "auto"),  # the TUI's signal beside its toast
    }

    @classmethod
    def _after(cls, values: dict[str, Any]) -> None:
        webhook, command = values["webhook"], values["command"]
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise _Declined
        if command is not None and not (command.strip() if isinstance(command, str) else command):
            raise _Declined
        if isinstance(command, str):
            import shlex

            shlex.split(command)  # ValueError: declined, pydantic says why

    def argv(self) -> list[str] | None:
        """The command as arguments (a string is split as a shell would, but no shell runs it)."""
        if self.command is None:
            return None
        import shlex

        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


DEFAULT_TIERS = {"free": 1, "standard": 8, "unlimited": 0}  # 0 = the whole inventory
DEFAULT_PRIORITIES = {"high": 1000, "normal": 0, "low": -100}


class Config(_Lean):
    _fields = {
        "default_profile": (_str, "local"),
        "profiles": (_dict_of(_model(Profile)), {}),
        "tiers": (_dict_of(_int()), {}),
        "prices": (_dict_of(_float()), {}),
        "priorities": (_dict_of(_int()), {}),
        "frameworks": (_dict_of(_dict_of(_model(FrameworkVersion))), {}),
        "secrets": (_dict_of(_secret), {}),
        "keys": (_dict_of(_str), {}),
        "billing": (_model(Billing), Billing()),
        "cache": (_model(Cache), Cache()),
        "notify": (_model(NotifySettings), NotifySettings()),
        "source": (_optional(_str), None),  # where it was read from; never dumped
    }
    _excluded = frozenset({"source"})

    @classmethod
    def _after(cls, values: dict[str, Any]) -> None:
        if any(gpus < 0 for gpus in values["tiers"].values()):
            raise _Declined  # pydantic words it: tier must allow 0 (= whole inventory) or more GPUs

    # -- derived views -------------------------------------------------------------------------
    def all_tiers(self) -> dict[str, int]:
        return {**DEFAULT_TIERS, **self.tiers}

    def all_priorities(self) -> dict[str, int]:
        return {**DEFAULT_PRIORITIES, **self.priorities}

    def profile(self, name: str | None = None) -> Profile:
        """The named profile, else `DLAAS_PROFILE`, else `default_profile`."""
        name = name or os.environ.get("DLAAS_PROFILE") or self.default_profile
        if name in self.profiles:
            return self.profiles[name].model_copy(update={"name": name})
        if name == "local":
            return Profile(name="local")
        known = sorted({"local", *self.profiles})
        hint = did_you_mean(name, known)
        raise NotFound(f"no profile {name!r}{hint}; known profiles: {', '.join(known)}")

    def tier_gpus(self, profile: Profile) -> int:
        """GPUs (or cpu slots) a profile may hold at once; 0 means the whole inventory."""
        tiers = self.all_tiers()
        if profile.tier not in tiers:
            hint = did_you_mean(profile.tier, list(tiers))
            raise ConfigError(f"{self.source or 'config'}: unknown tier {profile.tier!r}{hint}")
        return tiers[profile.tier]


def parse_config(text: str, source: str = "config.toml", *, cache: Path | str | None = None) -> Config:
    """The config `text` holds; `cache`, where given, keeps the last TOML reading (see `_read_toml`)."""
    data = _read_toml(text, source, cache)
    try:
        values = Config._fast(data)
    except _Declined:
        from pydantic import ValidationError

        from .config_schema import format_errors

        try:
            values = Config._slow(data)
        except ValidationError as exc:
            raise ConfigError(format_errors(source, exc)) from None
    values["source"] = source
    return Config._build(values)


def _read_toml(text: str, source: str, cache: Path | str | None) -> dict[str, Any]:
    """tomllib's reading of `text`. Every command reads the config, and tomllib costs ~7 ms to
    import and parse, so the last reading is kept in `cache` (marshal, beside the very text it was
    read from: any change to the file, whatever its size or time stamp, reads it afresh). A cache
    that cannot be read or written is passed over; a file marshal cannot hold (TOML dates) is not
    kept."""
    if cache is not None:
        try:
            with open(cache, "rb") as fh:
                seen, data = marshal.load(fh)
            if seen == text and isinstance(data, dict):
                return data
        except (OSError, ValueError, EOFError, TypeError):
            pass
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if cache is not None:
        try:
            write_private(cache, marshal.dumps((text, data)))
        except (OSError, ValueError):
            pass
    return data


def load_config(paths: Paths | None = None) -> Config:
    """Read the config file; no file means every default."""
    paths = paths or get_paths()
    path = paths.config_file_str  # a str: pathlib is not imported for this (see backend/paths.py)
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return Config(source=path)
    except OSError as exc:  # a folder where the file belongs, DLAAS_HOME under a file, no permission
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    return parse_config(text, path, cache=os.path.join(paths.cache_dir_str, "config.read"))


def save_config_text(text: str, paths: Paths | None = None) -> Path:
    """Validate, then write the config atomically with 0600 permissions."""
    paths = paths or get_paths()
    parse_config(text, str(paths.config_file))
    write_private(paths.config_file, text)
    return paths.config_file
