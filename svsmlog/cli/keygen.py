"""``svsmlog keygen``: a recipient key pair for the guest owner (or a debug reader)."""

from __future__ import annotations

from pathlib import Path

from .. import crypto
from .common import CliError, read_passphrase, write_new_file


def key_paths(out: Path) -> tuple[Path, Path]:
    """NAME.key and NAME.pub; a .key or .pub already on NAME is not doubled."""
    base = out.with_suffix("") if out.suffix in (".key", ".pub") else out
    return base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")


def keygen(out: Path, kem: str, passphrase_file: Path | None, force: bool) -> str:
    """Write the pair; returns the line to print."""
    passphrase = read_passphrase(passphrase_file)
    key = crypto.generate_private_key(crypto.KEM_BY_NAME[kem])
    private_path, public_path = key_paths(out)
    for path in (private_path, public_path):
        if not force and path.exists():  # checked before writing either, so no half pair is left
            raise CliError(f"{path}: already exists (use --force to overwrite)")
    write_new_file(private_path, key.to_pem(passphrase), mode=0o600, force=force)
    write_new_file(public_path, key.public.to_pem(), mode=0o644, force=force)
    sealed = "encrypted with the passphrase" if passphrase else "not encrypted"
    return (f"wrote {private_path} (private, {sealed}, mode 0600) and {public_path}; "
            f"{kem} key id {key.key_id.hex()}")
