"""The launch configuration of the SVSM model: TOML schema, validation, digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from svsmlog import crypto
from svsmlog.format import DebugCeiling, Layout
from svsmlog.model.config import ConfigError, LaunchConfig
from svsmlog.records import Level


@pytest.fixture(scope="module")
def keys() -> dict[str, crypto.PrivateKey]:
    return {
        "owner": crypto.generate_private_key(),
        "owner2": crypto.generate_private_key(crypto.KEM_MLKEM768_X25519),
        "debug": crypto.generate_private_key(),
    }


@pytest.fixture()
def keydir(tmp_path: Path, keys: dict[str, crypto.PrivateKey]) -> Path:
    (tmp_path / "keys").mkdir()
    for name, k in keys.items():
        (tmp_path / "keys" / f"{name}.pub").write_bytes(k.public.to_pem())
    (tmp_path / "keys" / "junk.pub").write_text("not a key\n")
    return tmp_path


FULL = """\
[recipients]
owner = ["keys/owner.pub", "keys/owner2.pub"]

[log]
min_level = "debug"
layout = "per-service"

[log.streams.vtpm]
sectors = 512

[log.streams.core]
sectors = 64

[flush]
max_bytes = 2048
max_delay_ms = 50

[debug]
ceiling = "debug-only"
recipient = "keys/debug.pub"
streams = ["vtpm", "console"]
"""


def write(dirpath: Path, text: str) -> Path:
    p = dirpath / "launch.toml"
    p.write_text(text)
    return p


def test_full_file(keydir: Path, keys: dict[str, crypto.PrivateKey]) -> None:
    path = write(keydir, FULL)
    cfg = LaunchConfig.load(path)
    assert [k.key_id for k in cfg.owners] == [keys["owner"].key_id, keys["owner2"].key_id]
    assert cfg.layout == Layout.PER_SERVICE and cfg.min_level == Level.DEBUG
    assert cfg.flush_max_bytes == 2048 and cfg.flush_max_delay_ms == 50
    assert cfg.debug_ceiling == DebugCeiling.DEBUG_ONLY
    assert cfg.debug_recipient is not None and cfg.debug_recipient.key_id == keys["debug"].key_id
    assert cfg.debug_streams == ("vtpm", "console")
    specs = [(s.stream, s.name, s.sectors) for s in cfg.streams()]
    assert specs == [(1, "boot", 128), (2, "core", 64), (3, "attest", 128), (4, "vtpm", 512),
                     (5, "apic", 128), (6, "uefi", 256), (7, "console", 256)]
    # The measured digest is the file's own SHA-256.
    assert cfg.digest == crypto.sha256(path.read_bytes())
    assert cfg.stream_for_service("vtpm") == "vtpm"


def test_minimal_file_defaults(keydir: Path) -> None:
    cfg = LaunchConfig.load(write(keydir, '[recipients]\nowner = ["keys/owner.pub"]\n'))
    assert cfg.layout == Layout.AGGREGATED and cfg.min_level == Level.INFO
    assert [(s.stream, s.name) for s in cfg.streams()] == [(1, "all")]
    assert cfg.debug_ceiling == DebugCeiling.NEVER and cfg.debug_streams == ("all",)
    assert (cfg.flush_max_bytes, cfg.flush_max_delay_ms) == (4096, 200)
    assert cfg.stream_for_service("vtpm") == "all"


def test_default_digest_is_canonical(keys: dict[str, crypto.PrivateKey]) -> None:
    a = LaunchConfig.default([keys["owner"].public])
    b = LaunchConfig.default([keys["owner"].public])
    assert a.digest == b.digest == crypto.sha256(a.canonical())
    assert b"svsmlog-launch-config-v1" in a.canonical()
    c = LaunchConfig.default([keys["owner"].public], "per-service")
    d = LaunchConfig.default([keys["owner2"].public])
    assert len({a.digest, c.digest, d.digest}) == 3
    # What the digest covers: everything, keys by value.
    e = LaunchConfig.default([keys["owner"].public], min_level=Level.TRACE)
    assert e.digest != a.digest


def test_replace_layout_keeps_shared_sizes(keydir: Path) -> None:
    cfg = LaunchConfig.load(write(keydir, FULL))
    agg = cfg.replace(layout="aggregated")
    assert [(s.name, s.sectors) for s in agg.streams()] == [("all", 1536)]
    assert agg.debug_streams == ("all",)
    assert agg.digest == crypto.sha256(agg.canonical()) != cfg.digest
    back = agg.replace(layout=Layout.PER_SERVICE)
    assert dict(back.sectors)["vtpm"] == 256  # sizes of streams the other layout lacks: defaults


def test_volume_sectors(keys: dict[str, crypto.PrivateKey]) -> None:
    from svsmlog.format import FIRST_REGION_LBA

    cfg = LaunchConfig.default([keys["owner"].public], "per-service", sectors={"vtpm": 20})
    assert cfg.volume_sectors() == FIRST_REGION_LBA + 128 + 256 + 128 + 24 + 128 + 256 + 256


OWN = '[recipients]\nowner = ["keys/owner.pub"]\n'
BAD = [
    ("not toml = = 1", "not valid TOML"),
    (OWN + '[logs]\n', "unknown table [logs]"),
    ("[log]\n", "[recipients] owner is missing"),
    ("[recipients]\nowner = []\n", "non-empty list"),
    ('[recipients]\nowner = "keys/owner.pub"\n', "non-empty list"),
    ('[recipients]\nowner = ["keys/none.pub"]\n', "cannot read key file"),
    ('[recipients]\nowner = ["keys/junk.pub"]\n', "key file 'keys/junk.pub'"),
    ('[recipients]\nowner = ["keys/owner.pub", "keys/owner.pub"]\n', "listed twice"),
    (OWN + 'extra = 1\n', "unknown key 'extra' in [recipients]"),
    (OWN + '[log]\nmin_level = "verbose"\n', "unknown level 'verbose'"),
    (OWN + '[log]\nmin_level = 3\n', "min_level must be a string"),
    (OWN + '[log]\nlayout = "per-cpu"\n', "unknown layout 'per-cpu'"),
    (OWN + '[log.streams.vtpm]\nsectors = 64\n', "'vtpm' is not a stream of the aggregated"),
    (OWN + '[log.streams.all]\nsectors = 8\n', "sectors must be an integer"),
    (OWN + '[log.streams.all]\nsectors = true\n', "must be an integer"),
    (OWN + '[log.streams.all]\nsize = 64\n', "unknown key 'size'"),
    (OWN + '[log.streams.all]\n', "sectors is missing"),
    (OWN + '[flush]\nmax_bytes = 10\n', "max_bytes must be from"),
    (OWN + '[flush]\nmax_delay_ms = -1\n', "max_delay_ms must be from"),
    (OWN + '[flush]\nmax_delay_ms = 1.5\n', "must be an integer"),
    (OWN + '[debug]\nceiling = "sometimes"\n', "unknown value 'sometimes'"),
    (OWN + '[debug]\nrecipient = "keys/owner.pub"\n',
     "also an owner recipient"),
    (OWN + '[debug]\nstreams = ["vtpm"]\n', "'vtpm' is not a stream"),
    (OWN + '[debug]\nstreams = []\n', "non-empty list"),
    (OWN + '[log]\nlayout = "per-service"\n[debug]\n'
     'streams = ["vtpm", "vtpm"]\n', "named twice"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_config_one_clear_error(keydir: Path, text: str, message: str) -> None:
    path = write(keydir, text)
    with pytest.raises(ConfigError) as e:
        LaunchConfig.load(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        LaunchConfig.load(tmp_path / "absent.toml")


def test_default_needs_an_owner() -> None:
    with pytest.raises(ConfigError, match="no owner recipient"):
        LaunchConfig.default([])
