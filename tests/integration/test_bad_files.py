"""Bad files: the agent's and the server's configuration, keys, certificates and records
missing, empty, truncated, corrupt, mismatched, with wrong modes or owners, or symlinked.

Each case starts from a copy of a good state directory (an agent enrolled with a real server;
a server that has run once), damages one file, and runs the program. Expected: a clear error
that names the file and says what is wrong, a non-zero exit, no crash, and every file left
byte for byte as it was: nothing is regenerated over an identity that exists.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent_harness import Agent
from tether_harness import Server, bin_dir, free_port, wait_until

IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def snapshot(directory):
    """Every regular file's bytes and mode (symlinks as their target), but the files the
    agent rewrites as it runs (status.json, discovery.json)."""
    out = {}
    for p in sorted(Path(directory).rglob("*")):
        if p.name in ("status.json", "discovery.json"):
            continue
        if p.is_symlink():
            out[str(p.relative_to(directory))] = ("link", os.readlink(p))
        elif p.is_file():
            st = p.stat()
            out[str(p.relative_to(directory))] = (p.read_bytes(), st.st_mode & 0o7777, st.st_uid)
    return out


def run_until_exit(args, env=None, timeout=20):
    """Runs a daemon; returns (exit code or None if it kept running, stderr)."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace", env=env)
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        return None, err


def agent_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.pop("NOTIFY_SOCKET", None)
    env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=/nonexistent/tether-test-bus"
    return env


@pytest.fixture(scope="module")
def good_states(tmp_path_factory):
    """A server state directory that has run once, and an agent enrolled with it."""
    base = tmp_path_factory.mktemp("bad-files")
    server = Server(base / "server").start()
    try:
        token = server.ctl("enroll-token", "create", check=True).stdout.strip()
        agent = Agent(base / "agent", settings={"discovery.port": "0"})
        proc = agent.register(token)
        assert proc.returncode == 0, proc.stderr
        other = Server(base / "other-server", port=free_port())
        other.start()
        other.stop()
    finally:
        server.stop()
    return {"server": base / "server", "agent": base / "agent", "other": base / "other-server"}


def write(path, data, mode=None):
    """Replaces a file's bytes, keeping (or setting) its mode."""
    old_mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    path.write_bytes(data)
    os.chmod(path, old_mode if mode is None else mode)


def symlink_to_copy(path):
    """Moves the file out of the state directory and leaves a symlink to it."""
    target = path.parent.parent / (path.parent.name + "-moved-" + path.name)
    shutil.move(path, target)
    path.symlink_to(target)


def half(path):
    data = path.read_bytes()
    write(path, data[: len(data) // 2])


KEY, CRT, ENR, TRUST = "device.key", "device.crt", "enrollment.json", "trust.json"

# (name, damage(state_dir, states), expected text with {file} for the damaged file's path,
#  the damaged file's name; None: the agent must keep running)
AGENT_CASES = [
    ("key missing", lambda d, s: (d / KEY).unlink(),
     "cannot start: {file} is missing but {dir}/device.crt exists; refusing to make a new "
     "identity over it", KEY),
    ("key empty", lambda d, s: write(d / KEY, b""), "{file} is corrupt: not a private key", KEY),
    ("key truncated", lambda d, s: half(d / KEY), "{file} is corrupt: not a private key", KEY),
    ("key random bytes", lambda d, s: write(d / KEY, os.urandom(241)),
     "{file} is corrupt: not a private key", KEY),
    ("key mode 0644", lambda d, s: os.chmod(d / KEY, 0o644),
     "{file} has mode 0644: it must not be accessible to group or others (chmod 600)", KEY),
    ("key mode 0640", lambda d, s: os.chmod(d / KEY, 0o640), "{file} has mode 0640", KEY),
    ("key a symlink", lambda d, s: symlink_to_copy(d / KEY),
     "{file} is a symlink; refusing to use it", KEY),
    ("key a directory", lambda d, s: ((d / KEY).unlink(), (d / KEY).mkdir(mode=0o700)),
     "{file} is not a regular file", KEY),
    ("certificate missing", lambda d, s: (d / CRT).unlink(), "cannot start: {file} is missing",
     CRT),
    ("certificate empty", lambda d, s: write(d / CRT, b""),
     "{file} is corrupt: not a certificate", CRT),
    ("certificate truncated", lambda d, s: half(d / CRT),
     "{file} is corrupt: not a certificate", CRT),
    ("certificate random bytes", lambda d, s: write(d / CRT, os.urandom(700)),
     "{file} is corrupt: not a certificate", CRT),
    ("certificate for another key", lambda d, s: write(d / CRT,
                                                       (s["server"] / "server.crt").read_bytes()),
     "{file} does not belong to the key in {dir}/device.key", CRT),
    ("certificate a symlink", lambda d, s: symlink_to_copy(d / CRT),
     "refusing to follow a symlink at {file}", CRT),
    ("enrollment record empty", lambda d, s: write(d / ENR, b""), "{file} is corrupt", ENR),
    ("enrollment record truncated", lambda d, s: half(d / ENR), "{file} is corrupt", ENR),
    ("enrollment record random bytes", lambda d, s: write(d / ENR, os.urandom(200)),
     "{file} is corrupt", ENR),
    ("enrollment record with a wrong field type",
     lambda d, s: write(d / ENR, b'{"server_url": 5, "device_id": "x", "ca_fingerprint": "y",'
                                 b' "enrolled_at": "z"}'), "{file} is corrupt", ENR),
    ("trust record missing", lambda d, s: (d / TRUST).unlink(),
     "{file} is missing: this enrolled device cannot verify its server", TRUST),
    ("trust record empty", lambda d, s: write(d / TRUST, b""), "{file} is corrupt", TRUST),
    ("trust record random bytes", lambda d, s: write(d / TRUST, os.urandom(200)),
     "{file} is corrupt", TRUST),
    ("trust record trusting no CA", lambda d, s: write(d / TRUST, b'{"ca_fingerprints": []}'),
     "{file}", TRUST),
]

if IS_ROOT:
    AGENT_CASES.append(("key owned by another user", lambda d, s: os.chown(d / KEY, NOBODY, -1),
                        f"{{file}} is owned by uid {NOBODY}, not by us", KEY))


def run_agent(state_dir, conf, *extra):
    args = [str(bin_dir() / "tether-agent"), "--state-dir", str(state_dir), "-c", str(conf),
            "--set", "discovery.port=0", "--set", "connection.backoff_base=200ms", *extra, "run"]
    return run_until_exit(args, env=agent_env(), timeout=6)


def test_agent_refuses_damaged_state_naming_the_file(good_states, tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("# empty\n")
    started = time.monotonic()
    print()
    for index, (name, damage, expected, damaged) in enumerate(AGENT_CASES):
        state = tmp_path / f"agent{index}"
        shutil.copytree(good_states["agent"], state, symlinks=True)
        damage(state, good_states)
        before = snapshot(state)
        rc, err = run_agent(state, conf)
        text = expected.format(file=state / damaged, dir=state)
        print(f"  {name:45s} exit {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}")
        assert rc == 1, f"{name}: exit {rc}\n{err}"
        assert text in err, f"{name}: {text!r} not in\n{err}"
        assert "Sanitizer" not in err and "core dumped" not in err
        # Nothing regenerated or rewritten: the old identity stays exactly as it was.
        assert snapshot(state) == before, f"{name}: the state directory changed"
    print(f"{len(AGENT_CASES)} agent cases in {time.monotonic() - started:.1f} s")


def test_agent_with_good_state_runs(good_states, tmp_path):
    """The control: the undamaged copy starts (and is stopped by the test)."""
    conf = tmp_path / "agent.conf"
    conf.write_text("# empty\n")
    state = tmp_path / "agent"
    shutil.copytree(good_states["agent"], state, symlinks=True)
    before = snapshot(state)
    rc, err = run_until_exit([str(bin_dir() / "tether-agent"), "--state-dir", str(state), "-c",
                              str(conf), "--set", "discovery.port=0", "run"],
                             env=agent_env(), timeout=3)
    assert rc in (None, 0), err
    assert "starting, device" in err
    assert snapshot(state) == before


CONFIG_CASES = [
    ("missing", None, "{conf}"),
    ("random bytes", b"\x00\xff\x13garbage[[[\n\x01", "{conf}"),
    ("a section cut short", b"[connection\n", "{conf}"),
    ("a value of the wrong type", b"[connection]\nbackoff_base = banana\n", "{conf}"),
    ("an unknown key", b"[connection]\nbackof_base = 1s\n", "{conf}"),
]


def test_agent_config_errors_name_the_file(good_states, tmp_path):
    state = tmp_path / "agent"
    shutil.copytree(good_states["agent"], state, symlinks=True)
    before = snapshot(state)
    print()
    for name, content, expected in CONFIG_CASES:
        conf = tmp_path / f"agent-{name.replace(' ', '-')}.conf"
        if content is not None:
            conf.write_bytes(content)
        rc, err = run_agent(state, conf)
        print(f"  agent.conf {name:25s} exit {rc}: {err.strip()}")
        assert rc not in (None, 0), f"{name}: exit {rc}\n{err}"
        assert expected.format(conf=conf) in err, err
        assert snapshot(state) == before
    # The drop-in the server manages (settings): written atomically by the agent, so damage
    # means the disk or a local hand; refused, named, like any config file.
    conf = tmp_path / "agent-with-dropin.conf"
    conf.write_text("# empty\n")
    dropin = tmp_path / "agent-with-dropin.conf.d" / "50-server.conf"
    dropin.parent.mkdir()
    dropin.write_bytes(b"[shadow]\nallowed = maybe\n")
    rc, err = run_agent(state, conf)
    print(f"  server-managed drop-in damaged  exit {rc}: {err.strip()}")
    assert rc == 1 and f"{dropin}:2:" in err, err
    assert snapshot(state) == before


# The server: (name, damage(state_dir, states), expected text, damaged file)
SERVER_CASES = [
    ("CA key missing", lambda d, s: (d / "ca.key").unlink(),
     "{file} is missing while its pair exists", "ca.key"),
    ("CA certificate missing", lambda d, s: (d / "ca.crt").unlink(),
     "{file} is missing while its pair exists", "ca.crt"),
    ("CA key empty", lambda d, s: write(d / "ca.key", b""), "{file} is corrupt", "ca.key"),
    ("CA key truncated", lambda d, s: half(d / "ca.key"), "{file} is corrupt", "ca.key"),
    ("CA key random bytes", lambda d, s: write(d / "ca.key", os.urandom(300)),
     "{file} is corrupt", "ca.key"),
    ("CA key mode 0644", lambda d, s: os.chmod(d / "ca.key", 0o644),
     "{file} has mode 0644: it must not be accessible to group or others (chmod 600)", "ca.key"),
    ("CA key a symlink", lambda d, s: symlink_to_copy(d / "ca.key"),
     "{file} is a symlink; refusing to use it", "ca.key"),
    ("CA certificate empty", lambda d, s: write(d / "ca.crt", b""), "{file} is corrupt",
     "ca.crt"),
    ("CA certificate random bytes", lambda d, s: write(d / "ca.crt", os.urandom(900)),
     "{file} is corrupt", "ca.crt"),
    ("CA certificate of another CA",
     lambda d, s: write(d / "ca.crt", (s["other"] / "ca.crt").read_bytes()),
     "{dir}/ca.key does not match {file}", "ca.crt"),
    ("CA certificate a symlink", lambda d, s: symlink_to_copy(d / "ca.crt"),
     "refusing to follow a symlink at {file}", "ca.crt"),
    ("server key random bytes", lambda d, s: write(d / "server.key", os.urandom(300)),
     "{file} is corrupt", "server.key"),
    ("server key mode 0604", lambda d, s: os.chmod(d / "server.key", 0o604),
     "{file} has mode 0604", "server.key"),
    ("server certificate random bytes", lambda d, s: write(d / "server.crt", os.urandom(900)),
     "{file} is corrupt", "server.crt"),
    ("server certificate for another key",
     lambda d, s: write(d / "server.crt", (s["other"] / "server.crt").read_bytes()),
     "{dir}/server.key does not match {file}", "server.crt"),
    ("admin token garbage", lambda d, s: write(d / "admin.token", b"!!\n"),
     "{file} does not hold an admin token", "admin.token"),
    ("admin token mode 0644", lambda d, s: os.chmod(d / "admin.token", 0o644),
     "{file} has mode 0644", "admin.token"),
    ("database random bytes", lambda d, s: write(d / "tether.db", os.urandom(8192)),
     "{file}", "tether.db"),
    ("database truncated", lambda d, s: write(d / "tether.db",
                                              (d / "tether.db").read_bytes()[:1000]),
     "{file}", "tether.db"),
    ("database a symlink", lambda d, s: symlink_to_copy(d / "tether.db"),
     "cannot open database {file}", "tether.db"),
]
if IS_ROOT:
    SERVER_CASES.append(("CA key owned by another user",
                         lambda d, s: os.chown(d / "ca.key", NOBODY, -1),
                         f"{{file}} is owned by uid {NOBODY}, not by us", "ca.key"))


def server_args(state, conf):
    return [str(bin_dir() / "tether-server"), "--state-dir", str(state), "--listen",
            f"127.0.0.1:{free_port()}", "-c", str(conf)]


def test_server_refuses_damaged_state_naming_the_file(good_states, tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("# empty\n")
    started = time.monotonic()
    print()
    for index, (name, damage, expected, damaged) in enumerate(SERVER_CASES):
        state = tmp_path / f"server{index}"
        shutil.copytree(good_states["server"], state, symlinks=True)
        for leftover in ("tether.db-wal", "tether.db-shm"):
            (state / leftover).unlink(missing_ok=True)
        damage(state, good_states)
        before = snapshot(state)
        rc, err = run_until_exit(server_args(state, conf), timeout=10)
        text = expected.format(file=state / damaged, dir=state)
        print(f"  {name:40s} exit {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}")
        assert rc == 1, f"{name}: exit {rc}\n{err}"
        assert text in err, f"{name}: {text!r} not in\n{err}"
        after = snapshot(state)
        for keep in ("ca.key", "ca.crt"):  # the installation's identity is never replaced
            assert after.get(keep) == before.get(keep), f"{name}: {keep} changed"
    print(f"{len(SERVER_CASES)} server cases in {time.monotonic() - started:.1f} s")


def test_server_database_with_wide_mode_is_tightened(good_states, tmp_path):
    """The database is not a key: a wider mode is narrowed to 0600 (SqliteStore::open) and
    the server starts."""
    conf = tmp_path / "server.conf"
    conf.write_text("# empty\n")
    state = tmp_path / "server"
    shutil.copytree(good_states["server"], state, symlinks=True)
    os.chmod(state / "tether.db", 0o644)
    server = Server(state)
    server.start()
    try:
        assert (state / "tether.db").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()


def test_server_config_errors_name_the_file(good_states, tmp_path):
    state = tmp_path / "server"
    shutil.copytree(good_states["server"], state, symlinks=True)
    print()
    for name, content, expected in CONFIG_CASES:
        conf = tmp_path / f"server-{name.replace(' ', '-')}.conf"
        if content is not None:
            conf.write_bytes(content)
        rc, err = run_until_exit(server_args(state, conf), timeout=10)
        print(f"  server.conf {name:25s} exit {rc}: {err.strip()}")
        assert rc == 2, f"{name}: exit {rc}\n{err}"
        assert expected.format(conf=conf) in err, err


def test_agent_certificate_from_another_ca_is_kept_and_reported(make_server, make_agent):
    """A certificate for the device's key but not issued by the installation CA loads (it is
    the device's), is refused by the server's TLS, and stays: the agent runs on, says why in
    its status, and replaces nothing."""
    server = make_server().start()
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(settings={"discovery.port": "0", "connection.backoff_cap": "1s"})
    assert agent.register(token).returncode == 0
    crt = agent.state_dir / "device.crt"
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", str(agent.state_dir / "device.key"),
                    "-subj", "/CN=another-ca", "-days", "2", "-out", str(crt)], check=True,
                   capture_output=True)
    before = snapshot(agent.state_dir)
    agent.start()
    status = {}

    def failed_twice():
        nonlocal status
        status = agent.status()
        return (status.get("connection") or {}).get("failures", 0) >= 2

    try:
        wait_until(failed_twice, timeout=30, what="refused attempts")
    except AssertionError:
        print(f"agent exit status {agent.proc.poll()}, status {status}\n{agent.log()}")
        raise
    print(f"\n  status: {status['connection']['state']}, last error: "
          f"{status['connection']['last_error']}")
    # It once died here: lws freed the refused connection without telling UpConnection, whose
    # handshake timer then used the freed wsi (SIGSEGV).
    assert agent.proc.poll() is None, f"the agent died: {agent.proc.poll()}\n{agent.log()}"
    assert status["connection"]["state"] != "connected"
    assert "the server refused this device's certificate" in status["connection"]["last_error"]
    agent.stop()
    assert snapshot(agent.state_dir) == before
