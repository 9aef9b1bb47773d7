"""The Apple root certificates shipped in the layer are Apple's: their SHA-256 recomputed here must
be the fingerprints Apple publishes (https://www.apple.com/certificateauthority/), also listed in
the README. A changed, added or missing file fails."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography import x509

from videogen.adapters.app_store import APPLE_ROOT_FILES, APPLE_ROOTS_DIR, apple_roots

# file → (SHA-256 of the DER file, subject common name, expiry)
PUBLISHED = {
    "AppleIncRootCertificate.cer": (
        "B0B1730ECBC7FF4505142C49F1295E6EDA6BCAED7E2C68C5BE91B5A11001F024",
        "Apple Root CA",
        "2035-02-09",
    ),
    "AppleRootCA-G2.cer": (
        "C2B9B042DD57830E7D117DAC55AC8AE19407D38E41D88F3215BC3A890444A050",
        "Apple Root CA - G2",
        "2039-04-30",
    ),
    "AppleRootCA-G3.cer": (
        "63343ABFB89A6A03EBB57E9B3F5FA7BE7C4F5C756F3017B3A8C488C3653E9179",
        "Apple Root CA - G3",
        "2039-04-30",
    ),
}


def test_the_layer_ships_exactly_these_roots() -> None:
    assert sorted(p.name for p in APPLE_ROOTS_DIR.iterdir()) == sorted(PUBLISHED) == sorted(APPLE_ROOT_FILES)


def test_each_root_has_apple_s_published_sha256() -> None:
    for name, (sha256, _, _) in PUBLISHED.items():
        assert hashlib.sha256((APPLE_ROOTS_DIR / name).read_bytes()).hexdigest().upper() == sha256, name


def test_each_root_is_a_self_signed_apple_ca_still_valid() -> None:
    for name, (_, common_name, expiry) in PUBLISHED.items():
        cert = x509.load_der_x509_certificate((APPLE_ROOTS_DIR / name).read_bytes())
        assert cert.subject == cert.issuer
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == common_name
        assert cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "Apple Inc."
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.not_valid_after_utc.date().isoformat() == expiry
        assert cert.not_valid_after_utc > datetime.now(UTC), f"{name} expired: Apple's PKI page has its successor"


def test_the_verifier_s_roots_are_these_files_in_their_order() -> None:
    assert apple_roots() == tuple((APPLE_ROOTS_DIR / name).read_bytes() for name in APPLE_ROOT_FILES)
