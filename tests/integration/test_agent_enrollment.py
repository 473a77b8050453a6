"""tether-agent register: enrollment with one-time tokens, and every way it must refuse
without writing anything on the device."""

import base64
import os
import time

import pytest


def devices(server):
    import json
    proc = server.ctl("devices", "--json", check=True)
    return json.loads(proc.stdout)["devices"]


def tamper_fingerprint(token):
    prefix, url, fp, secret = token.split(".")
    wrong = ("0" if fp[0] != "0" else "1") + fp[1:]
    return ".".join([prefix, url, wrong, secret])


def tamper_secret(token):
    prefix, url, fp, _ = token.split(".")
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    return ".".join([prefix, url, fp, secret])


def assert_nothing_written(agent):
    assert not agent.state_dir.exists() or not any(agent.state_dir.iterdir()), \
        sorted(p.name for p in agent.state_dir.iterdir())


def test_register_prints_the_device_id_and_writes_the_identity(server, make_agent):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent()
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    device_id = proc.stdout.strip()
    assert len(device_id) == 64
    names = sorted(p.name for p in agent.state_dir.iterdir())
    assert names == ["device.crt", "device.key", "enrollment.json", "trust.json"]
    assert oct(agent.state_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((agent.state_dir / "device.key").stat().st_mode & 0o777) == "0o600"
    status = agent.status()
    assert status["device_id"] == device_id
    assert status["enrolled"] is True
    assert status["server_url"] == f"wss://127.0.0.1:{server.port}"
    assert not status["certificate"]["self_signed"]
    assert [d["id"] for d in devices(server)] == [device_id]

    # Enrolled once: a second register is refused unless forced, and keeps the identity.
    again = agent.register(server.ctl("enroll-token", "create", check=True).stdout.strip())
    assert again.returncode != 0
    assert "already enrolled" in again.stderr
    forced = agent.register(server.ctl("enroll-token", "create", check=True).stdout.strip(),
                            "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == device_id  # same key, same id


def test_wrong_ca_fingerprint_is_refused_before_the_secret_is_sent(server, make_agent):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent()
    proc = agent.register(tamper_fingerprint(token))
    assert proc.returncode == 1
    assert "does not match the fingerprint in the token" in proc.stderr
    assert_nothing_written(agent)
    # The secret never reached the server: the token still works.
    good = make_agent("good").register(token)
    assert good.returncode == 0, good.stderr


def test_wrong_token_is_refused(server, make_agent):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent()
    proc = agent.register(tamper_secret(token))
    assert proc.returncode == 1
    assert "unknown enrollment token" in proc.stderr
    assert_nothing_written(agent)


def test_reused_token_is_refused(server, make_agent):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    assert make_agent("first").register(token).returncode == 0
    second = make_agent("second")
    proc = second.register(token)
    assert proc.returncode == 1
    assert "already used" in proc.stderr
    assert_nothing_written(second)


def test_expired_token_is_refused(server, make_agent):
    proc = server.ctl("enroll-token", "create", "--ttl", "1s")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    time.sleep(2.1)
    agent = make_agent()
    proc = agent.register(token)
    assert proc.returncode == 1
    assert "expired" in proc.stderr
    assert_nothing_written(agent)


def test_malformed_token_and_unreachable_server(server, make_agent):
    agent = make_agent()
    proc = agent.register("tether1.garbage")
    assert proc.returncode == 1
    assert "invalid enrollment token" in proc.stderr
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    server.stop()
    proc = agent.register(token)
    assert proc.returncode == 1
    assert "cannot enroll with" in proc.stderr
    assert_nothing_written(agent)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as the administrator")
def test_root_registers_for_an_agent_that_runs_as_its_own_user(server):
    """The packaged agent runs as the system user tether-agent and owns its state directory;
    the administrator runs `tether-agent register` as root. The files must end up the agent's
    (0600 keys it can read), and `status` as root must still read them."""
    import shutil
    import tempfile
    from pathlib import Path

    from agent_harness import Agent

    # Outside pytest's 0700 temporary tree, which uid 65534 could not enter.
    top = Path(tempfile.mkdtemp(prefix="tether-owner-"))
    try:
        top.chmod(0o755)
        state = top / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        agent = Agent(state)
        proc = agent.register(server.ctl("enroll-token", "create", check=True).stdout.strip())
        assert proc.returncode == 0, proc.stderr
        owners = {p.name: (p.stat().st_uid, oct(p.stat().st_mode & 0o777))
                  for p in state.iterdir()}
        assert owners["device.key"] == (65534, "0o600"), owners
        assert all(uid == 65534 for uid, _ in owners.values()), owners
        status = agent.status()
        assert status["enrolled"] is True
        assert status["device_id"] == proc.stdout.strip()
    finally:
        shutil.rmtree(top, ignore_errors=True)
