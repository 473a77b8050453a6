"""Enrollment over real HTTPS: POST /api/v1/enroll with a CSR made by the openssl CLI."""

import http.client
import json
import socket
import subprocess
import time

import pytest

from tether_harness import DeviceKey


def cert_field(cert_path, *args):
    return subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", *args],
                          capture_output=True, text=True, check=True).stdout


def test_enroll_issues_a_client_certificate_for_the_key(server, tmp_path):
    device = DeviceKey(tmp_path)
    token = server.create_token()["token"]
    status, _, body = device.enroll(server, token)
    assert status == 201, body
    assert body["device_id"] == device.device_id
    assert body["server_url"] == f"wss://127.0.0.1:{server.port}"
    assert body["ca_certificates_pem"] == [server.ca_file.read_text()]
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(server.ca_file), "-purpose",
                             "sslclient", str(device.cert)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    as_server = subprocess.run(["openssl", "verify", "-CAfile", str(server.ca_file), "-purpose",
                                "sslserver", str(device.cert)], capture_output=True, text=True)
    assert as_server.returncode != 0  # a device can never pose as a server
    assert f"CN = {device.device_id}" in cert_field(device.cert, "-subject")


def test_token_string_carries_url_and_ca_fingerprint(server):
    token = server.create_token()["token"]
    prefix, url_b64, fingerprint, secret = token.split(".")
    assert prefix == "tether1"
    fp = cert_field(server.ca_file, "-fingerprint", "-sha256").split("=")[1].strip()
    assert fingerprint == fp.replace(":", "").lower()
    assert len(secret) == 43


def test_reused_token_is_refused(server, tmp_path):
    token = server.create_token()["token"]
    assert DeviceKey(tmp_path, "a").enroll(server, token)[0] == 201
    status, _, body = DeviceKey(tmp_path, "b").enroll(server, token)
    assert status == 401
    assert body["error"] == {"code": "unauthenticated",
                             "message": "this enrollment token was already used"}


def test_wrong_token_is_refused(server, tmp_path):
    token = server.create_token()["token"]
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status, _, body = DeviceKey(tmp_path).enroll(server, wrong)
    assert status == 401
    assert body["error"]["message"] == "unknown enrollment token"


def test_expired_token_is_refused(server, tmp_path):
    created = server.create_token(ttl_s=1)
    # Expiry is a matter of the clock: wait until the wall clock is past it.
    while time.time() < created["expires_at"] + 1:
        time.sleep(0.1)
    status, _, body = DeviceKey(tmp_path).enroll(server, created["token"])
    assert status == 401
    assert body["error"]["message"] == "this enrollment token has expired"


def test_mac_bound_token(server, tmp_path):
    token = server.create_token(mac="52-54-00-AA-BB-CC")["token"]
    status, _, body = DeviceKey(tmp_path, "a").enroll(server, token, macs=["52:54:00:12:34:56"])
    assert status == 403
    assert "52:54:00:aa:bb:cc" in body["error"]["message"]
    status, _, body = DeviceKey(tmp_path, "b").enroll(server, token, macs=["52:54:00:aa:bb:cc"])
    assert status == 201, body


def test_bad_requests(server, tmp_path):
    token = server.create_token()["token"]
    status, _, body = server.request("POST", "/api/v1/enroll", raw_body=b"{not json")
    assert status == 400 and body["error"]["code"] == "syntax"
    status, _, body = server.request("POST", "/api/v1/enroll", {"secret": "x"})
    assert status == 400 and body["error"]["code"] == "missing_field"
    assert "csr_pem" in body["error"]["message"]
    status, _, body = server.request("POST", "/api/v1/enroll", {
        "secret": token.split(".")[-1], "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nxx\n"})
    assert status == 400 and body["error"]["code"] == "bad_value"
    # A bad CSR does not use the token up.
    assert DeviceKey(tmp_path).enroll(server, token)[0] == 201


def test_body_over_one_mebibyte_is_413(server):
    # The server answers from the headers alone, without reading the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with server.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST /api/v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\n"
                        b"Content-Length: 1048577\r\n\r\n")
            response = http.client.HTTPResponse(tls)
            response.begin()
            assert response.status == 413
            assert json.loads(response.read())["error"]["code"] == "too_large"


def test_enrollment_is_rate_limited_per_source(make_server, tmp_path):
    server = make_server(extra_args=["--set", "enroll.rate_per_minute=3"]).start()
    codes = [server.request("POST", "/api/v1/enroll", {"secret": "x", "csr_pem": "y"})
             for _ in range(4)]
    assert [c[0] for c in codes[:3]] == [401, 401, 401]
    status, headers, body = codes[3]
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert body["error"]["code"] == "unavailable"


def test_re_enrolling_the_same_key_gets_a_fresh_certificate(server, tmp_path):
    device = DeviceKey(tmp_path)
    assert device.enroll(server, server.create_token()["token"])[0] == 201
    first = cert_field(device.cert, "-serial")
    assert device.enroll(server, server.create_token()["token"])[0] == 201
    assert cert_field(device.cert, "-serial") != first
    status, _, body = server.admin("GET", "/api/v1/devices")
    assert [d["id"] for d in body["devices"]] == [device.device_id]


def test_revoked_key_cannot_enroll_again(server, tmp_path):
    device = DeviceKey(tmp_path)
    assert device.enroll(server, server.create_token()["token"])[0] == 201
    assert server.admin("POST", f"/api/v1/devices/{device.device_id}/revoke", {})[0] == 200
    status, _, body = device.enroll(server, server.create_token()["token"])
    assert status == 403
    assert "revoked" in body["error"]["message"]


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/api/v1/devices", 401),
    ("POST", "/api/v1/enroll-tokens", 401),
    ("GET", "/api/v1/nothing", 404),
    ("GET", "/api/v1/enroll", 405),
])
def test_admin_calls_need_the_token(server, method, path, expected):
    status, headers, body = server.request(method, path, body={} if method == "POST" else None)
    assert status == expected
    assert body["error"]["code"] in ("unauthenticated", "not_found", "invalid_argument")
    status, _, _ = server.request("GET", "/api/v1/devices", token="wrong" * 8)
    assert status == 401
