"""Authentication and TLS against the real binary: Basic → bearer handshake, static tokens, and
every way in that must fail (UNAUTHENTICATED with one message that leaks nothing)."""
import base64
import datetime
import hashlib
import hmac
import json
import subprocess
import time

import pyarrow.flight as flight
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BIN, Bridge

SECRET = "a-test-secret-of-more-than-16-bytes"
P90 = flight.Ticket(json.dumps({"query": "p90", "dataset": "yellow", "output": "summary"}).encode())


def jwt(secret, exp, sub="alice"):
    """An HS256 JWT made here, independently of Bridge."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")  # noqa: E731
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "iat": int(time.time()), "exp": exp}).encode())
    sig = b64(hmac.new(secret.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def bearer(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.fixture(scope="module")
def secured(data_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    (d / "users").write_text("# user:password\nalice:wonderland\n")
    (d / "tokens").write_text("static-token-0123456789\n")
    (d / "secret").write_text(SECRET)
    b = Bridge([f"yellow={data_dir}/*.parquet"], d / "cache",
               ["--basic-users-file", str(d / "users"), "--api-tokens-file", str(d / "tokens"),
                "--jwt-secret-file", str(d / "secret")])
    yield b
    b.stop()


def test_basic_handshake_gives_a_bearer_token_that_works(secured):
    header, value = secured.client.authenticate_basic_token("alice", "wonderland")
    assert header == b"authorization" and value.startswith(b"Bearer ")
    options = flight.FlightCallOptions(headers=[(header, value)])
    assert secured.client.do_get(P90, options).read_all().num_rows == 1
    assert len(list(secured.client.list_flights(options=options))) > 0
    assert secured.client.do_get(P90, bearer("static-token-0123456789")).read_all().num_rows == 1


@pytest.mark.parametrize("case", ["none", "garbage", "expired", "other key", "static typo", "wrong password", "unknown user"])
def test_every_bad_credential_is_unauthenticated_and_says_nothing_more(secured, case):
    call = {
        "none": lambda: secured.client.do_get(P90).read_all(),
        "garbage": lambda: secured.client.do_get(P90, bearer("not.a.token")).read_all(),
        "expired": lambda: secured.client.do_get(P90, bearer(jwt(SECRET, int(time.time()) - 5))).read_all(),
        "other key": lambda: secured.client.do_get(P90, bearer(jwt("another-secret-of-enough-length", int(time.time()) + 600))).read_all(),
        "static typo": lambda: secured.client.do_get(P90, bearer("static-token-012345678")).read_all(),
        "wrong password": lambda: secured.client.authenticate_basic_token("alice", "looking-glass"),
        "unknown user": lambda: secured.client.authenticate_basic_token("mallory", "wonderland"),
    }[case]
    with pytest.raises(flight.FlightUnauthenticatedError) as err:
        call()
    message = str(err.value)
    assert "authentication required" in message
    for leak in ("expired", "signature", "alice", "wonderland", "static-token", "InvalidToken"):
        assert leak not in message


def test_a_token_signed_with_the_right_key_is_accepted(secured):
    # The control for the "other key" and "expired" cases: same construction, valid.
    assert secured.client.do_get(P90, bearer(jwt(SECRET, int(time.time()) + 600))).read_all().num_rows == 1


def test_anonymous_is_refused_off_loopback(data_dir, tmp_path):
    # Refused before anything binds: nothing listens on a non-loopback address, even briefly.
    out = subprocess.run([BIN, "--listen", "0.0.0.0:0", "--cache-dir", str(tmp_path / "cache"),
                          "--dataset", f"yellow={data_dir}/*.parquet"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "refusing to serve 0.0.0.0:0 without authentication" in out.stderr + out.stdout


# --- TLS ---------------------------------------------------------------------------------------

def _cert(subject, issuer_key, issuer_name, key, ca=False, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge test CA")])
    ca = _cert("bridge test CA", ca_key, ca_name, ca_key, ca=True)
    import ipaddress
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("127.0.0.1", ca_key, ca_name, srv_key, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("client", ca_key, ca_name, cli_key)
    files = {"ca": _pem(ca), "cert": _pem(srv), "key": _pem(srv_key), "client_cert": _pem(cli), "client_key": _pem(cli_key)}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d, files


def test_tls_serves_tls_and_refuses_plaintext(data_dir, tmp_path, pki):
    d, pem = pki
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--tls-cert", str(d / "cert"), "--tls-key", str(d / "key")])
    try:
        c = flight.connect(f"grpc+tls://{b.addr}", tls_root_certs=pem["ca"])
        assert c.do_get(P90).read_all().num_rows == 1
        with pytest.raises(flight.FlightUnavailableError):
            flight.connect(f"grpc://{b.addr}").do_get(P90).read_all()
    finally:
        b.stop()


def test_mutual_tls_requires_a_client_certificate(data_dir, tmp_path, pki):
    d, pem = pki
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--tls-cert", str(d / "cert"), "--tls-key", str(d / "key"), "--tls-client-ca", str(d / "ca")])
    try:
        good = flight.connect(f"grpc+tls://{b.addr}", tls_root_certs=pem["ca"], cert_chain=pem["client_cert"],
                              private_key=pem["client_key"])
        assert good.do_get(P90).read_all().num_rows == 1
        with pytest.raises(flight.FlightUnavailableError):
            flight.connect(f"grpc+tls://{b.addr}", tls_root_certs=pem["ca"]).do_get(P90).read_all()
    finally:
        b.stop()
