"""The agent as a citizen of its device (issue 5): power commands through logind (a
python3-dbusmock logind on a private bus), inventory and its updates (a real network
namespace), settings pushed by the server, SIGHUP, and the systemd notify protocol."""

import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from dbusmock_harness import logind_bus
from tether_harness import Server, bin_dir, wait_until


def enrolled(server, make_agent, **kwargs):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(**kwargs)
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    return agent, proc.stdout.strip()


def show(server, device_id):
    return json.loads(server.ctl("device", "show", device_id, "--json", check=True).stdout)


# ---- power commands through logind ----------------------------------------------------

def test_reboot_and_poweroff_reach_logind_and_errors_come_back(server, make_agent):
    with logind_bus() as (bus, logind):
        agent, device_id = enrolled(server, make_agent, env=bus.env())
        agent.start()
        agent.wait_connected()

        proc = server.ctl("device", "reboot", device_id)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert logind.wait_for_calls("Reboot") == [[False]]  # never interactive

        proc = server.ctl("device", "poweroff", device_id)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert logind.wait_for_calls("PowerOff") == [[False]]

        logind.fail_method("Reboot", "org.freedesktop.DBus.Error.AccessDenied",
                           "Permission denied by polkit")
        proc = server.ctl("device", "reboot", device_id)
        assert proc.returncode == 1
        assert "org.freedesktop.DBus.Error.AccessDenied" in proc.stderr, proc.stderr
        assert "Permission denied by polkit" in proc.stderr
        # The failure is an answer, not a lost channel.
        assert agent.connection_state() == "connected"


def test_without_logind_the_command_fails_with_the_reason(server, make_agent):
    agent, device_id = enrolled(server, make_agent)  # the bus address points nowhere
    agent.start()
    agent.wait_connected()
    proc = server.ctl("device", "reboot", device_id)
    assert proc.returncode == 1
    assert "logind is not reachable" in proc.stderr, proc.stderr


# ---- inventory -------------------------------------------------------------------------

def test_inventory_of_this_machine_with_macs(server, make_agent):
    agent, device_id = enrolled(server, make_agent)
    agent.start()
    agent.wait_connected()
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                      check=True).stdout)
    macs = {l["address"] for l in links
            if l.get("link_type") == "ether" and l["address"] != "00:00:00:00:00:00"}
    wait_until(lambda: (show(server, device_id).get("inventory") or {}).get("nics"),
               timeout=15, what="an inventory on the server")
    inventory = show(server, device_id)["inventory"]
    reported = {n["mac"] for n in inventory["nics"] if n["mac"]}
    assert macs <= reported, (macs, reported)
    assert inventory["cpu_count"] == os.cpu_count()
    text = server.ctl("device", "show", device_id, check=True).stdout
    for mac in macs:
        assert mac in text


@pytest.fixture
def netns():
    name = "tether-inv-" + uuid.uuid4().hex[:8]
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {proc.stderr.strip()}")
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


class NsServer(Server):
    def __init__(self, *args, ns, **kwargs):
        super().__init__(*args, **kwargs)
        self.ns = ns

    def command(self):
        return ["ip", "netns", "exec", self.ns, *super().command()]

    def ctl(self, *args, env=None, check=False):
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, str(bin_dir() / "tetherctl"), "--server", self.url,
             "--token-file", str(self.token_file), "--ca-file", str(self.ca_file), *args],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "HOME": "/nonexistent"})
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc


def test_inventory_follows_a_new_interface_in_a_namespace(netns, tmp_path, make_agent):
    server = NsServer(tmp_path / "server", ns=netns).start()
    try:
        agent, device_id = enrolled(server, make_agent,
                                    prefix=["ip", "netns", "exec", netns])
        agent.start()
        agent.wait_connected()
        wait_until(lambda: show(server, device_id).get("inventory"), timeout=15,
                   what="the first inventory")
        assert {n["name"] for n in show(server, device_id)["inventory"]["nics"]} == set()

        subprocess.run(["ip", "-n", netns, "link", "add", "tv0", "type", "veth", "peer",
                        "name", "tv1"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "tv0", "address",
                        "02:00:00:aa:bb:01"], check=True)

        def nics():
            inv = show(server, device_id).get("inventory") or {}
            return {n["name"]: n["mac"] for n in inv.get("nics", [])}
        wait_until(lambda: nics().get("tv0") == "02:00:00:aa:bb:01" and "tv1" in nics(),
                   timeout=20, what=f"tv0 and tv1 in the inventory (now {nics()})")
        assert "02:00:00:aa:bb:01" in server.ctl("device", "show", device_id, check=True).stdout
    finally:
        server.stop()


# ---- settings from the server ------------------------------------------------------------

def test_settings_pushed_applied_and_local_policy_wins(server, make_agent):
    agent, device_id = enrolled(server, make_agent)
    agent.conf.write_text("[shadow]\nprompt_user = true\n")
    agent.start()
    agent.wait_connected()
    dropin = agent.conf.parent / (agent.conf.name + ".d") / "50-server.conf"

    proc = server.ctl("device", "settings", device_id, "--set", "shadow.view_only=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "view_only = true" in dropin.read_text()
    got = server.ctl("device", "settings", device_id, "--get", "--json", check=True).stdout
    got = json.loads(got)
    assert got["effective"]["shadow.view_only"] == "true"
    assert got["origins"]["shadow.view_only"] == "server"
    assert got["origins"]["shadow.prompt_user"].startswith(str(agent.conf))

    # Asking without prompting, when the local file says ask: refused, nothing written.
    before = dropin.read_text()
    proc = server.ctl("device", "settings", device_id, "--set", "shadow.prompt_user=false")
    assert proc.returncode == 1
    assert "may not weaken" in proc.stderr, proc.stderr
    assert dropin.read_text() == before
    # And the channel stayed up through all of it.
    assert agent.connection_state() == "connected"


def test_sighup_reloads_without_dropping_the_channel(server, make_agent):
    agent, _ = enrolled(server, make_agent)
    agent.start()
    agent.wait_connected()
    since = agent.status()["connection"]["since"]
    agent.conf.write_text("[log]\nlevel = debug\n")
    time.sleep(1.1)  # a reconnect would show a later "since"
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("reloading (SIGHUP)")
    time.sleep(1)
    assert agent.status()["connection"]["since"] == since
    assert agent.connection_state() == "connected"

    # A bad file is refused and the old configuration stays.
    agent.conf.write_text("[log]\nlevel = loud\n")
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("configuration not reloaded")
    assert agent.connection_state() == "connected"

    # A connection setting changed: the channel restarts.
    agent.conf.write_text("[connection]\nping_interval = 20s\n")
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("connection settings changed")
    agent.wait_connected()
    assert agent.status()["connection"]["since"] > since


# ---- systemd notify --------------------------------------------------------------------

class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)

    def drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return self.messages
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self):
        return [t for _, t in self.drain()]


def test_notify_ready_status_watchdog_stall_and_stopping(server, make_agent, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    agent, _ = enrolled(server, make_agent, env={
        "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000",
        "TETHER_TEST_STALL_ON_SIGUSR1": "3"})
    agent.start()
    agent.wait_connected()
    wait_until(lambda: any("STATUS=connected to wss://" in t for t in notify.texts()),
               timeout=10, what="a STATUS line saying connected")
    texts = notify.texts()
    assert "READY=1" in texts
    ready_at = texts.index("READY=1")
    assert any(t.startswith("STATUS=") for t in texts)

    # WATCHDOG=1 at half of WATCHDOG_USEC: about every 0.5 s.
    time.sleep(2.5)
    pings = [t for t, text in notify.drain() if text == "WATCHDOG=1"]
    recent = [t for t in pings if t > time.monotonic() - 2.2]
    assert len(recent) >= 3, f"{len(recent)} watchdog pings in 2.2 s"

    # A stalled loop stops feeding the watchdog.
    agent.proc.send_signal(signal.SIGUSR1)
    agent.wait_log("stalling the event loop")
    stall_started = time.monotonic()
    time.sleep(2.5)
    during = [t for t, text in notify.drain() if text == "WATCHDOG=1" and t > stall_started + 0.2]
    assert during == [], f"watchdog pings during a stalled loop: {len(during)}"
    wait_until(lambda: any(t > stall_started + 2.5 and text == "WATCHDOG=1"
                           for t, text in notify.drain()),
               timeout=5, what="watchdog pings after the stall")

    started = time.monotonic()
    rc = agent.stop()
    assert rc == 0
    assert time.monotonic() - started < 5
    assert "STOPPING=1" in notify.texts()
    assert ready_at >= 0
