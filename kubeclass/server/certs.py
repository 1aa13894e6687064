"""A self-signed cluster CA and the API server's serving certificate (EC P-256, via `cryptography`)."""
from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_certs(pki: str, hosts: list[str]) -> tuple[str, str, str]:
    """Create (once) ca.crt/ca.key and server.crt/server.key under `pki`; returns (ca, cert, key) paths."""
    os.makedirs(pki, mode=0o700, exist_ok=True)
    os.chmod(pki, 0o700)   # private keys inside, whatever the umask or an older directory's mode
    ca_crt, ca_key = os.path.join(pki, "ca.crt"), os.path.join(pki, "ca.key")
    srv_crt, srv_key = os.path.join(pki, "server.crt"), os.path.join(pki, "server.key")
    now = datetime.datetime.now(datetime.timezone.utc)
    if not os.path.exists(ca_crt):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeclass-ca")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write(ca_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()), 0o600)
        _write(ca_crt, cert.public_bytes(serialization.Encoding.PEM))
        if os.path.exists(srv_crt):
            os.remove(srv_crt)
    wanted = sorted(set(hosts) | {"localhost", "127.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
    if os.path.exists(srv_crt):
        cert = x509.load_pem_x509_certificate(open(srv_crt, "rb").read())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        if set(wanted) <= have and cert.not_valid_after_utc > now + datetime.timedelta(days=30):
            return ca_crt, srv_crt, srv_key
    ca_cert = x509.load_pem_x509_certificate(open(ca_crt, "rb").read())
    ca_k = serialization.load_pem_private_key(open(ca_key, "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in wanted:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .sign(ca_k, hashes.SHA256()))
    _write(srv_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(srv_crt, cert.public_bytes(serialization.Encoding.PEM))
    return ca_crt, srv_crt, srv_key


def ensure_client_cert(pki: str, name: str, common_name: str, organizations: list[str]) -> tuple[str, str]:
    """A client certificate signed by the cluster CA (e.g. the API server's own, to call node agents as
    kube-apiserver's --kubelet-client-certificate does); created once. Returns (cert, key) paths."""
    crt, key_path = os.path.join(pki, f"{name}.crt"), os.path.join(pki, f"{name}.key")
    now = datetime.datetime.now(datetime.timezone.utc)
    if os.path.exists(crt):
        cert = x509.load_pem_x509_certificate(open(crt, "rb").read())
        if cert.not_valid_after_utc > now + datetime.timedelta(days=30):
            return crt, key_path
    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(pki, "ca.crt"), "rb").read())
    ca_k = serialization.load_pem_private_key(open(os.path.join(pki, "ca.key"), "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] +
                        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_k, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(crt, cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path
