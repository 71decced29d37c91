"""Fixed TEST-ONLY recipient keys for the demo samples (``python -m svsmlog.model.samples``).

These private keys are published in this repository: anything encrypted to them is readable
by everyone. They exist so that the sample images and their README can be reproduced and read;
never put them in a real launch configuration. They were generated once with
``crypto.generate_private_key`` and are kept here as PEM text (PKCS#8, unencrypted), so this
module imports nothing from ``cryptography`` (all cryptography stays in ``svsmlog.crypto``).
"""

from __future__ import annotations

from .. import crypto

TEST_KEY_PEM: dict[str, str] = {
    "owner": (
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VuBCIEINASuKHjVrGlgugS3tv++gSFoAzplTDSoWUHaIBsVpx3\n"
        "-----END PRIVATE KEY-----\n"
    ),
    "owner-pq": (
        "-----BEGIN PRIVATE KEY-----\n"
        "MFQCAQAwCwYJYIZIAWUDBAQCBEKAQAC03RleUkcApqeIqXrmarb05VF1HiASEyTT\n"
        "xWRdeVnlyAuuG/o7Hia2ue77p94rD12ZlCs3Ewoxn+H4g8aTM/I=\n"
        "-----END PRIVATE KEY-----\n"
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VuBCIEIGD9DNdHf4POV9O7X8zbZFORUiLUNjwMqN6LQ5S+sGZe\n"
        "-----END PRIVATE KEY-----\n"
    ),
    "debug": (
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VuBCIEIIBa+Vua7r98FbnBqcD0oL4BhIb/jp5Gtm7b7jB2yS5y\n"
        "-----END PRIVATE KEY-----\n"
    ),
}

KEY_KINDS = {"owner": "x25519", "owner-pq": "mlkem768-x25519", "debug": "x25519"}


def sample_key(name: str) -> crypto.PrivateKey:
    """One of the TEST-ONLY keys by name: "owner", "owner-pq" or "debug"."""
    return crypto.load_private_key(TEST_KEY_PEM[name].encode())


def key_file_names(name: str) -> tuple[str, str]:
    """(private, public) file names of a TEST-ONLY key, e.g. TEST-ONLY-owner.key/.pub."""
    return f"TEST-ONLY-{name}.key", f"TEST-ONLY-{name}.pub"
