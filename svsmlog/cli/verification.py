"""Running the verifier for ``verify``, ``extract`` and ``export-key``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..anchor import Anchor, AnchorError, ReportAnchor
from ..origin import OriginPolicy
from ..parallel import default_jobs
from ..report import Report, Verdict
from ..verify import Keyring, Verifier, VolumeError
from .common import (
    CliError,
    Exit,
    Image,
    OriginArgs,
    ReadProgress,
    load_anchor,
    load_keyring,
    load_origin_policy,
    region_extents,
)


@dataclass
class Verification:
    image: Image
    keyring: Keyring
    verifier: Verifier
    report: Report

    @property
    def exit_code(self) -> Exit:
        """A violation is exit 1 whatever else is true; exit 3 only when no key opened
        anything and nothing proves tampering (spec §9, man page EXIT STATUS)."""
        return {
            Verdict.VIOLATED: Exit.VIOLATED,
            Verdict.UNVERIFIABLE: Exit.NO_KEY,
            Verdict.PARTIAL: Exit.PARTIAL,
            Verdict.INTACT: Exit.INTACT,
        }[self.report.outcome]

    def nothing_opened(self) -> bool:
        """Not one frame authenticated with the keys we were given, and no violation."""
        return self.report.outcome is Verdict.UNVERIFIABLE

    def no_key_error(self) -> CliError:
        ours = [k.key_id.hex() for k in self.keyring.private_keys]
        ours += [f"stream key for boot {k.boot} stream {k.stream}" for k in self.keyring.stream_keys]
        return CliError(
            f"{self.image.name}: none of the given keys opens this log ({'; '.join(ours)}); "
            f"'svsmlog info {self.image.path}' lists the key ids it is sealed to",
            Exit.NO_KEY,
        )


def verify_image(
    image: Image,
    keys: list[Path],
    stream_keys: list[Path],
    passphrase_file: Path | None,
    anchor_file: Path | None = None,
    jobs: int | None = None,
    origin: OriginArgs | None = None,
) -> Verification:
    """Load the keys, the anchor and the attestation expectations (exit 2/3 on bad ones),
    then run every check."""
    keyring = load_keyring(keys, stream_keys, passphrase_file, image.volume)
    anchor = load_anchor(anchor_file)
    policy = load_origin_policy(origin or OriginArgs())
    # Two passes read the regions, each with a bar of its own on a terminal: the key harvest
    # ("keys") and the frame checks ("verifying"). The frame checks may fork workers (the
    # qcow2 reader only preads, so its copy in each is independent); the bar runs no thread
    # and is drawn only by this process, from what the workers send it (ReadProgress).
    try:
        with ReadProgress(image.source.read_sectors, region_extents(image.volume)) as progress:
            return _verify(image, keyring, anchor, progress, jobs or default_jobs(), policy)
    except AnchorError as e:  # an anchor report that cannot be judged at all
        raise CliError(f"{anchor_file}: {e}") from None


def _verify(image: Image, keyring: Keyring, anchor: Anchor | ReportAnchor | None, progress: ReadProgress,
            jobs: int, policy: OriginPolicy) -> Verification:
    src = image.source
    try:
        verifier = Verifier(progress.read, src.sector_count, keyring, base_offset=src.base_offset,
                            on_pass=progress.begin, on_wait=progress.tick, origin=policy)
    except VolumeError as e:
        raise CliError(f"{image.name}: not an svsmlog volume: {e}") from None
    report = verifier.run(anchor, jobs=jobs)
    return Verification(image, keyring, verifier, report)
