"""A throwaway C2PA signing chain for tests and demos: a root CA plus an ES256 leaf.

C2PA refuses a self-signed leaf ("the certificate was self-signed"), so tests need a
tiny CA. The leaf follows the C2PA profile: CA:FALSE, digitalSignature, and the
emailProtection extended key usage. Never use these files for real work: the key is
written in clear next to the certificate.

    ca = make_test_ca(tmp_path)
    label_image(path, info, C2paConfig(cert_chain=str(ca.chain), private_key=str(ca.key)))
    verify(path, trust_anchors_pem=ca.root.read_text())   # -> "valid" instead of "untrusted"
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["TestCa", "make_test_ca"]


class TestCa(BaseModel):
    """Paths of the PEM files written by `make_test_ca`."""

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path  # the CA certificate: pass as trust anchor
    chain: Path  # leaf + CA certificates: the signing chain
    key: Path  # the leaf's private key (PKCS#8, unencrypted)

    def c2pa_config(self) -> dict[str, str]:
        """Fields for `config.C2paConfig`."""
        return {"cert_chain": str(self.chain), "private_key": str(self.key), "trust_anchors": str(self.root)}


def make_test_ca(folder: str | Path, common_name: str = "Portrait Studio Test") -> TestCa:
    """Write `ca.pem`, `chain.pem` and `key.pem` into `folder` (created if needed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portrait Studio tests"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"{common_name} Root CA"))
        .issuer_name(name(f"{common_name} Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"{common_name} Signer"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    root = out / "ca.pem"
    chain = out / "chain.pem"
    key = out / "key.pem"
    root.write_bytes(ca_cert.public_bytes(pem))
    chain.write_bytes(leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key.chmod(0o600)
    return TestCa(root=root, chain=chain, key=key)
