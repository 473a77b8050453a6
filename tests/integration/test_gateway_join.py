"""The gateway registry and join: tetherctl gateway add|list|remove, the join token, the join
itself (through a real tether-gateway when it is built), and enroll-token create --via."""

import base64
import json
import os
import re
import stat
import subprocess
import time

import pytest

from tether_harness import DeviceKey, bin_dir, free_port, token_secret, wait_until

GATEWAY_TOKEN = re.compile(r"tether-gw1\.[A-Za-z0-9_-]+")


def token_doc(token):
    payload = token.split(".", 1)[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def make_token(doc):
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return "tether-gw1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def enrollment_token_url(token):
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def add_gateway(server, name, url, *extra):
    out = server.ctl("gateway", "add", name, "--url", url, *extra)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert GATEWAY_TOKEN.fullmatch(token), out.stdout
    return token


def gateways(server):
    return {g["name"]: g for g in
            json.loads(server.ctl("gateway", "list", "--json", check=True).stdout)["gateways"]}


def join_over_https(server, token, directory, name="gw"):
    """The join request as tether-gateway sends it (for the server's side alone)."""
    doc = token_doc(token)
    key = DeviceKey(directory, name)
    return server.request("POST", "/api/v1/gateways/join",
                          {"secret": doc["s"], "name": doc["n"], "csr": key.csr_pem()})


# ---- tetherctl and the server's side ---------------------------------------------------

def test_gateway_add_list_remove(server):
    token = add_gateway(server, "branch-1", "wss://gw.example:9443")
    doc = token_doc(token)
    assert doc["v"] == 1 and doc["n"] == "branch-1"
    assert doc["u"] == f"wss://127.0.0.1:{server.port}"
    ca_der = subprocess.run(["openssl", "x509", "-in", str(server.ca_file), "-outform", "DER"],
                            check=True, capture_output=True).stdout
    import hashlib
    assert doc["f"] == hashlib.sha256(ca_der).hexdigest()
    assert len(base64.urlsafe_b64decode(doc["s"] + "=")) == 32

    out = server.ctl("gateway", "add", "branch-2", "--url", "wss://192.0.2.7:9443", "--ttl",
                     "15m", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert set(body) == {"name", "url", "token", "expires_at"}
    assert 14 * 60 <= body["expires_at"] - time.time() <= 15 * 60 + 5

    dup = server.ctl("gateway", "add", "branch-1", "--url", "wss://other:1")
    assert dup.returncode == 1 and "exists already" in dup.stderr
    for bad in (["Bad_Name", "--url", "wss://gw:1"], ["ok", "--url", "https://gw:1"],
                ["ok", "--url", "wss://gw:1/path"]):
        out = server.ctl("gateway", "add", *bad)
        assert out.returncode == 1, out.stdout
    assert server.ctl("gateway", "add", "ok").returncode == 2  # no --url

    listed = gateways(server)
    assert sorted(listed) == ["branch-1", "branch-2"]
    assert listed["branch-1"]["joined"] is False
    assert listed["branch-1"]["link"] == "not joined"
    assert listed["branch-1"]["url"] == "wss://gw.example:9443"
    table = server.ctl("gateway", "list", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "URL", "LINK", "DEVICES", "JOINED"]
    assert table[1].startswith("branch-1")

    assert server.ctl("gateway", "remove", "branch-2", check=True).stdout.strip() == \
        "removed gateway branch-2"
    out = server.ctl("gateway", "remove", "branch-2")
    assert out.returncode == 1 and "no gateway" in out.stderr
    assert sorted(gateways(server)) == ["branch-1"]


def test_join_request_works_once_and_marks_the_gateway_joined(server, tmp_path):
    token = add_gateway(server, "gw", "wss://127.0.0.1:9443")
    status, _, body = join_over_https(server, token, tmp_path)
    assert status == 200, body
    assert body["name"] == "gw" and body["gateway_url"] == "wss://127.0.0.1:9443"
    assert body["ca_certificates"] == [server.ca_file.read_text()]
    cert = tmp_path / "gw.crt"
    cert.write_text(body["certificate"])
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    assert "CN = tether-gateway gw" in text
    assert "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text

    status, _, body = join_over_https(server, token, tmp_path, "again")
    assert status == 409, body
    assert "already joined" in body["error"]["message"]
    listed = gateways(server)["gw"]
    assert listed["joined"] is True and listed["joined_at"] > 0
    assert listed["link"] in ("connected", "disconnected")
    assert "joined" in server.log()


def test_a_wrong_or_expired_secret_is_refused(server, tmp_path):
    token = add_gateway(server, "gw", "wss://127.0.0.1:9443", "--ttl", "1s")
    doc = token_doc(token)
    doc["s"] = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    status, _, body = join_over_https(server, make_token(doc), tmp_path)
    assert status == 401 and body["error"]["message"] == "unknown gateway or join token"
    expires = json.loads(server.ctl("gateway", "list", "--json", check=True).stdout)[
        "gateways"][0]["join_expires_at"]
    wait_until(lambda: time.time() > expires + 0.1, timeout=5, what="the token to expire")
    status, _, body = join_over_https(server, token, tmp_path, "late")
    assert status == 401 and "expired" in body["error"]["message"]
    assert gateways(server)["gw"]["joined"] is False


def test_enroll_token_via_a_gateway_names_its_url(server, tmp_path):
    add_gateway(server, "branch-1", "wss://gw.example:9443")
    out = server.ctl("enroll-token", "create", "--via", "branch-1")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert enrollment_token_url(token) == "wss://gw.example:9443"
    assert "through gateway branch-1" in out.stderr

    # The device is told to use the gateway as its server URL.
    device = DeviceKey(tmp_path)
    status, _, body = device.enroll(server, token)
    assert status == 201, body
    assert body["server_url"] == "wss://gw.example:9443"

    plain = server.ctl("enroll-token", "create", check=True).stdout.strip()
    assert enrollment_token_url(plain) == f"wss://127.0.0.1:{server.port}"
    out = server.ctl("enroll-token", "create", "--via", "nowhere")
    assert out.returncode == 1 and "no gateway nowhere" in out.stderr


# ---- tether-gateway --join -------------------------------------------------------------

def gateway_binary():
    path = bin_dir() / "tether-gateway"
    if not path.exists():
        pytest.skip(f"{path} is not built: the gateway's side of the join is covered by "
                    "GatewayIdentityTest only")
    return path


class GatewayProcess:
    def __init__(self, state_dir, token):
        self.state_dir = state_dir
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(gateway_binary()), "--state-dir", str(state_dir), "--join", token,
             "--listen", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace")

    def joined_or_exited(self, timeout=20):
        """Waits until the gateway wrote its identity or exited; returns the exit code or None."""
        wait_until(lambda: (self.state_dir / "gateway.json").exists() or
                   self.proc.poll() is not None, timeout=timeout, what="the join")
        return self.proc.poll()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read()


@pytest.fixture
def start_gateway():
    started = []

    def start(state_dir, token):
        g = GatewayProcess(state_dir, token)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def test_tether_gateway_joins_once(server, tmp_path, start_gateway):
    gateway_binary()
    token = add_gateway(server, "gw", "wss://127.0.0.1:9443")
    first = start_gateway(tmp_path / "gw1", token)
    rc = first.joined_or_exited()
    assert rc is None or rc == 0, first.stop()
    state = tmp_path / "gw1"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "gateway.key").st_mode) == 0o600
    record = json.loads((state / "gateway.json").read_text())
    assert record["name"] == "gw"
    assert record["gateway_url"] == "wss://127.0.0.1:9443"
    chain = (state / "gateway.crt").read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert (state / "ca.crt").read_text() == server.ca_file.read_text()
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(server.ca_file),
                             "-purpose", "sslserver", str(state / "gateway.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    listed = gateways(server)["gw"]
    assert listed["joined"] is True
    print("first join:", first.stop())

    second = start_gateway(tmp_path / "gw2", token)
    rc = second.joined_or_exited()
    log = second.stop()
    print("second join:", log)
    assert rc not in (None, 0)
    assert "already joined" in log
    assert not (tmp_path / "gw2" / "gateway.json").exists()
    assert not (tmp_path / "gw2" / "gateway.key").exists()


def test_tether_gateway_refuses_an_expired_token(server, tmp_path, start_gateway):
    gateway_binary()
    token = add_gateway(server, "gw", "wss://127.0.0.1:9443", "--ttl", "1s")
    expires = gateways(server)["gw"]["join_expires_at"]
    wait_until(lambda: time.time() > expires + 0.1, timeout=5, what="the token to expire")
    g = start_gateway(tmp_path / "gw", token)
    rc = g.joined_or_exited()
    log = g.stop()
    print(log)
    assert rc not in (None, 0)
    assert "expired" in log
    assert not (tmp_path / "gw" / "gateway.json").exists()


def test_tether_gateway_checks_the_ca_before_sending_the_secret(make_server, tmp_path,
                                                                 start_gateway):
    gateway_binary()
    server = make_server("server").start()
    other = make_server("other").start()  # another installation: another CA
    token = add_gateway(server, "gw", "wss://127.0.0.1:9443")
    doc = token_doc(token)
    other_doc = token_doc(add_gateway(other, "gw", "wss://127.0.0.1:9443"))
    assert other_doc["f"] != doc["f"]

    # The server's URL with the other installation's CA: the server's chain does not match.
    doc["f"] = other_doc["f"]
    g = start_gateway(tmp_path / "wrong-ca", make_token(doc))
    rc = g.joined_or_exited()
    log = g.stop()
    print(log)
    assert rc not in (None, 0)
    assert not (tmp_path / "wrong-ca" / "gateway.json").exists()
    assert "gateway join" not in server.log(), "the request must never reach the server"
    assert gateways(server)["gw"]["joined"] is False

    # The secret was not spent: the right token still works.
    g = start_gateway(tmp_path / "right", token)
    rc = g.joined_or_exited()
    assert rc is None or rc == 0, g.stop()
    assert gateways(server)["gw"]["joined"] is True
