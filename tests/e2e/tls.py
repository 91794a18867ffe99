"""A throw-away certificate authority for tests, made with the openssl command line: a CA, the local broker's
certificate (for 127.0.0.1 only) and a client certificate, all PEM, EC keys (fast to make)."""

import subprocess
from pathlib import Path
from typing import NamedTuple


class Certificates(NamedTuple):
    ca: Path  # the CA's certificate: what clients trust (KAFKA_SSL_CA_FILE)
    broker_keystore: Path  # the broker's key (PKCS#8) then its certificate, as Kafka's PEM keystore wants
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it alone, the broker's certificate is unknown


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _key_and_request(folder: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, request = folder / f"{name}.key", folder / f"{name}.csr"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", request, "-subj", subject)
    return key, request


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", cert, "-subj", f"/CN={name}", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def _signed(folder: Path, name: str, subject: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, request = _key_and_request(folder, name, subject)
    cert, extfile = folder / f"{name}.pem", folder / f"{name}.ext"
    extfile.write_text(extensions)
    ca_key, ca_cert = ca
    _openssl("x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", extfile)
    return key, cert


def make_certificates(folder: Path) -> Certificates:
    ca = _ca(folder, "test-ca")
    _, other = _ca(folder, "other-ca")
    broker_key, broker_cert = _signed(folder, "broker", "/CN=127.0.0.1", ca,
                                      "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    client_key, client_cert = _signed(folder, "client", "/CN=crm-import", ca, "extendedKeyUsage=clientAuth\n")
    keystore = folder / "broker-keystore.pem"
    keystore.write_text(broker_key.read_text() + broker_cert.read_text())
    return Certificates(ca[1], keystore, client_cert, client_key, other)
