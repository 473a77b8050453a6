"""tether-server's first start, its state directory, and what it listens on."""

import os
import signal
import sqlite3
import stat
import subprocess

from tether_harness import Server, bin_dir, free_port


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_start_creates_private_state(server):
    d = server.state_dir
    assert mode(d) == 0o700
    for name in ("ca.key", "server.key", "admin.token", "tether.db"):
        assert mode(d / name) == 0o600, name
    assert (d / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert len(server.admin_token()) == 43  # 32 bytes, base64url
    log = server.log()
    assert str(d / "admin.token") in log
    assert str(d / "ca.crt") in log
    assert log.count("listening on") == 1
    db = sqlite3.connect(d / "tether.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"devices", "enrollment_tokens"} <= tables
    finally:
        db.close()


def test_server_certificate_chains_to_ca_and_names_loopback(server):
    d = server.state_dir
    out = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.crt"), "-purpose",
                          "sslserver", str(d / "server.crt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(d / "server.crt"), "-noout", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text


def test_restart_keeps_the_ca_and_token(server):
    ca = server.ca_file.read_bytes()
    token = server.admin_token()
    assert server.stop() == 0
    server.start()
    assert server.ca_file.read_bytes() == ca
    assert server.admin_token() == token
    assert "created the installation CA" not in server.log()


def test_binding_loopback_listens_only_there(server):
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    sockets = [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(
        f":{server.port}")]
    assert sockets == [f"127.0.0.1:{server.port}"]


def test_sigterm_exits_zero(server):
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.log()


def test_refuses_a_key_readable_by_others(make_server):
    server = make_server().start()
    server.stop()
    os.chmod(server.state_dir / "ca.key", 0o644)
    server.start(wait=False)
    assert server.wait_exit() != 0
    assert "ca.key" in server.log() and "0644" in server.log()


def test_refuses_a_key_that_does_not_match_its_certificate(make_server, tmp_path):
    first = make_server("one").start()
    second = make_server("two").start()
    first.stop()
    second.stop()
    (first.state_dir / "server.key").write_bytes((second.state_dir / "server.key").read_bytes())
    first.start(wait=False)
    assert first.wait_exit() != 0
    assert "server.key does not match" in first.log()


def test_refuses_an_unknown_setting(tmp_path):
    (tmp_path / "none.conf").write_text("")
    out = subprocess.run([str(bin_dir() / "tether-server"), "--state-dir", str(tmp_path / "s"),
                          "--set", "server.nonsense=1", "-c", str(tmp_path / "none.conf")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "server.nonsense" in out.stderr


def test_port_in_use_is_a_clear_error(server, make_server):
    other = make_server("other", port=server.port)
    other.start(wait=False)
    assert other.wait_exit() != 0
    assert f"cannot listen on 127.0.0.1:{server.port}" in other.log()
