"""A clock far behind or far ahead of the certificates (libfaketime), on the agent and on the
server: a clear diagnosis naming the clock, no crash loop (attempts spaced by the backoff),
no identity made again or overwritten because of the clock, and recovery once the clock is
right — changed at run time through libfaketime's timestamp file, without a restart."""

import hashlib
import json
import time
from pathlib import Path

import pytest

from tether_harness import wait_until

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
WINDOW = 6.0  # seconds over which connection attempts are counted

pytestmark = pytest.mark.skipif(not LIBFAKETIME.exists(),
                                reason=f"{LIBFAKETIME} is missing (Debian package faketime)")


class FakeClock:
    """A libfaketime offset read from a file that the test rewrites while the process runs."""

    def __init__(self, path, offset):
        self.path = Path(path)
        self.set(offset)

    def set(self, offset):
        self.path.write_text(offset + "\n")

    def env(self):
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                # Re-read the file at most once a second; monotonic time stays real, so
                # libwebsockets' timers (and the backoff) run at the real pace.
                "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def digests(directory, names):
    return {n: hashlib.sha256((Path(directory) / n).read_bytes()).hexdigest() for n in names}


AGENT_FILES = ("device.key", "device.crt", "enrollment.json", "trust.json")
SERVER_FILES = ("ca.key", "ca.crt", "server.key", "server.crt", "link.key", "link.crt",
                "admin.token")


def enrolled(server, make_agent, **kwargs):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(**kwargs)
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    return agent, proc.stdout.strip()


def last_error(agent):
    alive(agent)
    return (agent.status().get("connection") or {}).get("last_error") or ""


def alive(agent):
    """Fails at once, with the exit status, when the agent has died (its status file would
    still say "connecting")."""
    rc = agent.proc.poll()
    if rc is not None:
        raise AssertionError(f"tether-agent died (exit status {rc}); its log:\n{agent.log()}")
    return True


def count_attempts(log_of, window=WINDOW):
    """Failed attempts (the agent's "waiting ... before reconnecting" lines) in `window` s."""
    before = log_of().count("before reconnecting")
    time.sleep(window)  # a measurement window, not synchronisation
    return log_of().count("before reconnecting") - before


@pytest.mark.parametrize("offset, expect", [
    ("-3y", "not valid before"),
    ("+30y", "expired at"),
])
def test_agent_clock_off(server, make_agent, tmp_path, offset, expect):
    agent, device_id = enrolled(server, make_agent)
    files = digests(agent.state_dir, AGENT_FILES)
    clock = FakeClock(tmp_path / "agent-clock", offset)
    agent.env.update(clock.env())
    agent.start()
    pid = agent.proc.pid
    agent.wait_log("check the system clock of this device", timeout=30)
    wait_until(lambda: "system clock" in last_error(agent), timeout=20,
               what=f"the clock diagnosis in the status; log:\n{agent.log()}")
    diagnosis = last_error(agent)
    attempts = count_attempts(agent.log)
    print(f"\n[figures] agent clock {offset}: {attempts} failed attempts in {WINDOW:.0f} s; "
          f"status last_error: {diagnosis}")
    assert "the server's certificate" in diagnosis and expect in diagnosis, diagnosis
    assert agent.proc.poll() is None and agent.proc.pid == pid  # no crash, no restart
    assert attempts <= 10, agent.log()  # the backoff spaces attempts (cap 5 s here)
    assert digests(agent.state_dir, AGENT_FILES) == files  # nothing made again

    # The clock is put right while the agent runs: online again, same identity.
    clock.set("+0")
    started = time.monotonic()
    agent.wait_connected(timeout=30)
    print(f"[figures] online {time.monotonic() - started:.1f} s after the clock was fixed")
    assert agent.proc.pid == pid
    assert digests(agent.state_dir, AGENT_FILES) == files
    assert agent.status()["device_id"] == device_id


@pytest.mark.parametrize("offset, server_says, agent_says", [
    ("+30y", "expired at", "refused this device's certificate"),
    ("-3y", "not valid before", "refused this device's certificate"),
])
def test_server_clock_off(make_server, make_agent, tmp_path, monkeypatch, offset, server_says,
                          agent_says):
    server = make_server().start()
    agent, device_id = enrolled(server, make_agent,
                                settings={"connection.connect_timeout": "5s"})
    server.stop()
    files = digests(server.state_dir, SERVER_FILES)

    # The server restarts with its clock off; the agent's clock is right.
    clock = FakeClock(tmp_path / "server-clock", offset)
    with monkeypatch.context() as env:
        for key, value in clock.env().items():
            env.setenv(key, value)
        server.start()
    # At start it says the clock is outside its CA's validity, and re-issues nothing.
    server.wait_for_log("check the system clock of this server")
    assert "issued the server certificate" not in server.log()
    assert digests(server.state_dir, SERVER_FILES) == files

    agent.start()
    pid = agent.proc.pid
    server.wait_for_log("TLS handshake refused: a client's certificate", timeout=30)
    refused = [l for l in server.log().splitlines() if "TLS handshake refused" in l]
    assert server_says in refused[-1] and "this server" in refused[-1], refused[-1]
    wait_until(lambda: "clock" in last_error(agent), timeout=30,
               what=f"the clock hint in the agent status; its log:\n{agent.log()}")
    attempts = count_attempts(agent.log)
    refusals = len([l for l in server.log().splitlines() if "TLS handshake refused" in l])
    print(f"\n[figures] server clock {offset}: agent made {attempts} failed attempts in "
          f"{WINDOW:.0f} s; server logged {refusals} refusals; server: {refused[-1]}; "
          f"agent status: {last_error(agent)}")
    # The alert can be lost (the server closes first: "Closed before conn"): the log must
    # have the diagnosis, not necessarily the latest status.
    assert agent_says in agent.log(), agent.log()
    assert attempts <= 10, agent.log()
    assert agent.proc.poll() is None and agent.proc.pid == pid
    assert server.proc.poll() is None

    # The server's clock is put right while it runs: the agent comes online, nothing was
    # issued again on either side.
    clock.set("+0")
    started = time.monotonic()
    wait_until(lambda: alive(agent) and agent.connection_state() == "connected", timeout=30,
               what=f"the agent to connect; its log:\n{agent.log()}")
    print(f"[figures] online {time.monotonic() - started:.1f} s after the server clock was fixed")
    proc = server.ctl("device", "show", device_id, "--json", check=True)
    assert json.loads(proc.stdout)["online"] is True
    assert digests(server.state_dir, SERVER_FILES) == files
