from __future__ import annotations

import os
import stat

import pytest

from backend.config import MASK, load_config, parse_config, save_config_text
from backend.errors import ConfigError, NotFound
from backend.paths import get_paths


def test_no_file_means_local_profile_with_defaults(dlaas_home):
    cfg = load_config()
    prof = cfg.profile()
    assert prof.name == "local"
    assert (prof.scheduler, prof.store, prof.tier, prof.cpu_slots) == ("local", "local", "unlimited", 1)
    assert cfg.tier_gpus(prof) == 0
    assert cfg.all_tiers()["free"] == 1


def test_dlaas_home_relocates_everything(dlaas_home):
    paths = get_paths()
    for p in (paths.config_dir, paths.state_dir, paths.store_dir, paths.cache_dir):
        assert str(p).startswith(str(dlaas_home))


def test_unknown_key_names_file_table_and_close_match():
    with pytest.raises(ConfigError) as err:
        parse_config('[profiles.lab]\nschedular = "kubernetes"\n', "/x/config.toml")
    assert str(err.value) == (
        "/x/config.toml: unknown key 'schedular' in [profiles.lab], did you mean 'scheduler'?"
    )


def test_nested_unknown_key_and_bad_value():
    text = '[profiles.cos]\nstore = "s3"\n[profiles.cos.s3]\nendpoint = "http://x"\n'
    with pytest.raises(ConfigError, match=r"unknown key 'endpoint' in \[profiles.cos.s3\], did you mean 'endpoint_url'\?"):
        parse_config(text, "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml: \[profiles.lab\] scheduler"):
        parse_config('[profiles.lab]\nscheduler = "slurm"\n', "c.toml")


def test_toml_syntax_error_names_file():
    with pytest.raises(ConfigError, match="c.toml: "):
        parse_config("[profiles\n", "c.toml")


def test_unknown_profile_suggests():
    cfg = parse_config('[profiles.lab]\nscheduler = "kubernetes"\n', "c.toml")
    with pytest.raises(NotFound, match="did you mean 'lab'"):
        cfg.profile("lba")


def test_env_profile(monkeypatch):
    cfg = parse_config('[profiles.lab]\ntier = "free"\n', "c.toml")
    monkeypatch.setenv("DLAAS_PROFILE", "lab")
    assert cfg.profile().name == "lab"
    assert cfg.tier_gpus(cfg.profile()) == 1


def test_secrets_masked_in_dump_and_saved_private(dlaas_home):
    text = '[profiles.cos]\nstore = "s3"\n[profiles.cos.s3]\naccess_key_id = "AKIA"\nsecret_access_key = "hunter2"\n[secrets]\nwandb = "tok"\n'
    path = save_config_text(text)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    cfg = load_config()
    dumped = cfg.model_dump_json()
    assert "hunter2" not in dumped and "tok" not in dumped and MASK in dumped
    assert "hunter2" not in repr(cfg.profile("cos"))
    assert cfg.profile("cos").s3.secret_access_key.reveal() == "hunter2"
