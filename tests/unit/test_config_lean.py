"""The config's fast reader (backend/config.py) against its pydantic rules (backend/config_schema.py).

Every config here is read both ways: a valid one must give the same values (types included: 10 is
not 10.0), a bad one the same error, word for word. The fields must match one for one, and a plainly
valid config must be read without importing pydantic at all (that is what the reader is for).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from pydantic import BaseModel, ValidationError

from backend import config, config_schema
from backend.config import Config, Profile, Secret, parse_config
from backend.errors import ConfigError

VALID = [
    "",
    'default_profile = "lab"\n[profiles.lab]\ntier = "free"\ncpu_slots = 4\ncpus = 2\nmemory = "8GiB"\n',
    '[profiles.k]\nkubernetes = {namespace = "ml", queue = "q"}\ns3 = {endpoint_url = "http://x", '
    'access_key_id = "AK", secret_access_key = "SK", connect_timeout = 3, max_concurrency = 8}\n',
    '[profiles.k2]\nscheduler = "local"\nkubernetes = {context = "c"}\n',
    '[profiles.b]\nbudget = {daily_usd = 5, monthly_usd = 100.5}\nread_only = true\n'
    'queue_policy = "best-effort"\nmax_model_unpacked_mb = 900\n',
    '[tiers]\ngold = 4\nzero = 0\n[prices]\nA100 = 2\nV100 = 1.25\n[priorities]\nurgent = 5000\n',
    '[frameworks.pytorch."2.1"]\npython = "/opt/py/bin/python"\nimage = "img:1"\n'
    '[frameworks.tf."2"]\ncpu_image = "c:1"\n',
    '[secrets]\nwandb = "tok"\nempty = ""\n[keys]\n"runs.halt" = "x"\n',
    '[billing]\nminimum_seconds = 0\n[cache]\nmax_gb = 1\n',
    '[notify]\ncommand = "notify-send \'run ended\'"\nwebhook = "https://h/x"\ntimeout_seconds = 120\n'
    'runs = false\nterminal = "bell"\n',
    '[notify]\ncommand = ["notify-send", "done"]\n',
    'source = "ignored"\n',
]

BAD = [
    '[profiles.lab]\nschedular = "kubernetes"\n',
    '[profiles.cos]\nstore = "s3"\n[profiles.cos.s3]\nendpoint = "http://x"\n',
    '[profiles.lab]\nscheduler = "slurm"\n',
    '[profiles.lab]\ncpu_slots = 0\n',
    '[profiles.lab]\ncpu_slots = 257\n',
    '[profiles.lab]\ncpu_slots = "3"\n',  # pydantic coerces it: so must we
    '[profiles.lab]\ncpu_slots = 2.0\n',
    '[profiles.lab]\ncpu_slots = 2.5\n',
    '[profiles.lab]\ncpu_slots = true\n',
    '[profiles.lab]\nread_only = "yes"\n',
    '[profiles.lab]\nread_only = 1\n',
    '[profiles.lab]\nmemory = "8 bananas"\n',
    '[profiles.lab]\nmemory = 8\n',
    '[profiles.lab]\nbudget = {daily_usd = -1}\n',
    '[profiles.lab]\nbudget = {daily_usd = nan}\n',
    '[profiles.lab]\nbudget = {daily_usd = "5"}\n',
    '[profiles.lab]\nbudget = 5\n',
    '[profiles.lab]\ns3 = {max_attempts = 21, addressing_style = "sideways"}\n',
    '[profiles.lab]\ns3 = {access_key_id = 12}\n',
    '[profiles.lab]\nkubernetes = {namespace = 3}\n',
    '[profiles.lab]\nname = "other"\n',
    'profiles = 3\n',
    '[tiers]\nbad = -1\n',
    '[tiers]\nhalf = 0.5\n',
    '[prices]\nA100 = "2"\n',
    '[prices]\nA100 = true\n',
    '[secrets]\nx = 1\n',
    '[keys]\n"runs.halt" = 1\n',
    '[notify]\nwebhook = "ftp://x"\n',
    '[notify]\ncommand = "  "\n',
    '[notify]\ncommand = []\n',
    '[notify]\ncommand = "echo \'unclosed"\n',
    '[notify]\ncommand = ["a", 1]\n',
    '[notify]\ntimeout_seconds = 0\n',
    '[notify]\nterminal = "loud"\n',
    '[cache]\nmax_gb = 0\n',
    '[billing]\nminimum_seconds = -1\n',
    '[frameworks.pytorch]\npython = "/x"\n',
    '[frameworks.pytorch."2"]\npyhton = "/x"\n',
    'default_profile = 1\nunknown = 2\n',
    'when = 1979-05-27T07:32:00Z\n',
]


def _typed(v):
    """A value with every type spelled out, so 10 and 10.0 (or str and Secret) differ."""
    if isinstance(v, BaseModel | config._Lean):
        return (type(v).__name__, {k: _typed(getattr(v, k)) for k in type(v).model_fields})
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_typed(x) for x in v]
    if isinstance(v, Secret):
        return ("Secret", v.reveal())
    return (type(v).__name__, v)


def _by_pydantic(text: str, source: str = "c.toml"):
    try:
        return config_schema.Config.model_validate(tomllib.loads(text)).model_copy(update={"source": source})
    except ValidationError as exc:
        return ConfigError(config_schema.format_errors(source, exc))


def test_fields_names_order_and_defaults_match_the_pydantic_models():
    assert set(config._LEAN) == {n for n, c in vars(config_schema).items()
                                 if isinstance(c, type) and issubclass(c, config_schema._Strict)
                                 and c is not config_schema._Strict}
    for name, lean in config._LEAN.items():
        model = getattr(config_schema, name)
        assert list(lean.model_fields) == list(model.model_fields), name
        for field, (_check, default) in lean._fields.items():
            assert _typed(default) == _typed(model.model_fields[field].default), (name, field)


@pytest.mark.parametrize("text", VALID)
def test_a_valid_config_reads_the_same_values(text):
    ours = parse_config(text, "c.toml")
    theirs = _by_pydantic(text)
    assert not isinstance(theirs, ConfigError), theirs
    assert _typed(ours) == _typed(theirs)
    assert ours.model_dump_json() == theirs.model_dump_json()
    assert ours.model_dump() == theirs.model_dump()


@pytest.mark.parametrize("text", BAD)
def test_a_bad_or_coerced_config_gets_pydantics_own_answer(text):
    theirs = _by_pydantic(text)
    if isinstance(theirs, ConfigError):
        with pytest.raises(ConfigError) as err:
            parse_config(text, "c.toml")
        assert str(err.value) == str(theirs)
    else:  # coerced ("3" for an int): the same coerced values
        assert _typed(parse_config(text, "c.toml")) == _typed(theirs)


def test_constructors_validate_and_coerce_as_pydantic_did():
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Profile(cpu_slots=0)
    assert Profile(cpu_slots="3").cpu_slots == 3
    prof = Profile(name="p", budget={"daily_usd": 2})
    assert prof.budget.daily_usd == 2.0 and type(prof.budget.daily_usd) is float
    cfg = Config(profiles={"p": prof}, prices={"cpu": 2})
    assert cfg.profile("p") == prof and cfg.prices == {"cpu": 2.0}
    with pytest.raises(ValidationError):  # a good nested record beside a bad value: pydantic words it
        Config(profiles={"p": prof}, tiers={"t": -1})
    copy = prof.model_copy(update={"read_only": True})
    assert copy.read_only and not prof.read_only
    with pytest.raises(TypeError, match="frozen"):
        prof.read_only = True  # type: ignore[misc]


def test_a_valid_config_is_read_without_pydantic(tmp_path):
    (tmp_path / "config.toml").write_text(VALID[2] + VALID[5] + VALID[7] + VALID[9])
    code = (
        "import sys\nfrom backend.config import load_config\n"
        "cfg = load_config()\nprof = cfg.profile('k')\n"
        "assert prof.scheduler == 'kubernetes' and prof.store == 's3', prof\n"
        "assert prof.s3.secret_access_key.reveal() == 'SK' and cfg.notify.runs is False\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core', 'yaml')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "DLAAS_HOME": str(tmp_path)})
    assert out.stdout.strip() == "[]"


# -- the kept TOML reading (config.read in the cache folder) ------------------------------------
READ_TWICE = (
    "import sys\nfrom backend.config import load_config\n"
    "cfg = load_config()\n"
    "print(cfg.profile('lab').cpu_slots, 'tomllib' in sys.modules)\n"
)


def _load_in_child(home) -> tuple[str, bool]:
    out = subprocess.run([sys.executable, "-c", READ_TWICE], capture_output=True, text=True, check=True,
                         env={**os.environ, "DLAAS_HOME": str(home)}).stdout.split()
    return out[0], out[1] == "True"


@pytest.mark.slow  # a child Python each
def test_an_unchanged_config_is_read_again_without_tomllib(tmp_path):
    (tmp_path / "config.toml").write_text('[profiles.lab]\ncpu_slots = 4\n')
    assert _load_in_child(tmp_path) == ("4", True)  # the first reading parses, and keeps it
    kept = tmp_path / "cache" / "config.read"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert _load_in_child(tmp_path) == ("4", False)


@pytest.mark.slow  # a child Python each
def test_any_change_to_the_file_is_read_afresh_even_with_the_same_size_and_time(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.lab]\ncpu_slots = 4\n')
    assert _load_in_child(tmp_path) == ("4", True)
    st = cfg.stat()
    cfg.write_text('[profiles.lab]\ncpu_slots = 7\n')  # same length
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same time stamp
    assert _load_in_child(tmp_path) == ("7", True)
    assert _load_in_child(tmp_path) == ("7", False)


@pytest.mark.slow  # a child Python each
@pytest.mark.parametrize("junk", [b"", b"not marshal", b"\xe9\x02\x00\x00\x00", None])
def test_a_broken_or_missing_kept_reading_is_passed_over(tmp_path, junk):
    (tmp_path / "config.toml").write_text('[profiles.lab]\ncpu_slots = 3\n')
    kept = tmp_path / "cache" / "config.read"
    if junk is None:  # a folder where the file belongs: it can be neither read nor written
        kept.mkdir(parents=True)
    else:
        kept.parent.mkdir(parents=True)
        kept.write_bytes(junk)
    assert _load_in_child(tmp_path) == ("3", True)
    if junk is not None:  # rewritten, and used from then on
        assert _load_in_child(tmp_path) == ("3", False)


def test_a_reading_marshal_cannot_hold_is_not_kept_and_errors_are_not_kept_either(tmp_path, monkeypatch):
    from backend.paths import get_paths

    monkeypatch.setenv("DLAAS_HOME", str(tmp_path))
    cfg = tmp_path / "config.toml"
    cfg.write_text('when = 2026-01-02T03:04:05Z\n[profiles.lab]\ncpu_slots = 2\n')
    with pytest.raises(ConfigError, match="when"):  # an unknown key: the reader's error, as before
        config.load_config(get_paths())
    assert not (tmp_path / "cache" / "config.read").exists()
    cfg.write_text('[profiles.lab\n')
    with pytest.raises(ConfigError, match="config.toml"):
        config.load_config(get_paths())
    assert not (tmp_path / "cache" / "config.read").exists()
