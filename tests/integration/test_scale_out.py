"""Scale-out (issue 12): two tether-server instances on one PostgreSQL database
(tests/pg/pg_fixture, Debian's postgresql 15), real tether-agents spread over both.

- tetherctl against either instance lists every device, online, with the instance holding it;
- a reboot asked of one instance reaches (python3-dbusmock's logind) a device held by the other,
  and a device's error comes back the same way;
- tetherctl shadow against one instance shows (vncsnapshot) the desktop of a device held by
  the other: the session is made on the holding instance and the viewer is redirected there;
- an instance killed (SIGKILL) loses its devices to the other (their endpoint lists), which
  shows them online again, with no row lost or duplicated; a stopped instance (SIGTERM) gives
  its devices up at once.

Timings are printed, not asserted."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from agent_harness import Agent
from dbusmock_harness import logind_bus
from pg_harness import fresh_database, psql
from tether_harness import Server, bin_dir, free_port, wait_until
from vnc_harness import Xvfb

BLUE = (0x1E, 0x90, 0xFF)


class Instance(Server):
    """A tether-server instance on the shared database with its own public_url."""

    def __init__(self, state_dir, store_url):
        port = free_port()
        super().__init__(state_dir, port=port,
                         extra_args=["--set", f"store.url={store_url}",
                                     "--set", f"server.public_url=wss://127.0.0.1:{port}",
                                     "--set", "up.flush_interval=1s"])

    def instance_id(self):
        match = None
        for line in self.lines:
            found = re.search(r"this is server instance ([0-9a-f]+)", line)
            if found:
                match = found.group(1)
        assert match, "no instance id in the log:\n" + self.log()
        return match

    def devices(self):
        proc = self.ctl("devices", "--json", check=True)
        return {d["id"]: d for d in json.loads(proc.stdout)["devices"]}


def need():
    for program in ("Xvfb", "xsetroot", "vncsnapshot", "convert"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (scripts/deps)")
    for name in ("tether-server", "tether-agent", "tetherctl", "tether-vnc"):
        if not (bin_dir() / name).exists():
            pytest.skip(f"{name} is not built in {bin_dir()}")


def snapshot_colour(path):
    out = subprocess.run(["convert", str(path), "-resize", "1x1!", "-depth", "8", "txt:-"],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"\((\d+),(\d+),(\d+)", out.splitlines()[-1])
    return tuple(int(v) for v in match.groups())


def close_to(a, b, tolerance=24):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def scrape(server):
    conn = server.https_connection()
    try:
        token = (server.state_dir / "metrics.token").read_text().strip()
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200, text
        return text
    finally:
        conn.close()


def sample(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name} in:\n{text}")


def promtool_check(text, what):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus, scripts/deps) is not installed")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not report, f"promtool on {what}:\n{report}"


@pytest.fixture
def cluster(tmp_path):
    need()
    url = fresh_database()
    first = Instance(tmp_path / "a", url).start()
    # The instances share the installation: CA, admin and metrics tokens. The first one made
    # them; the second gets a copy (docs/architecture.md, "Scale-out").
    (tmp_path / "b").mkdir(mode=0o700)
    for item in first.state_dir.iterdir():
        if item.is_file() and not item.name.startswith("tether.db"):
            shutil.copy2(item, tmp_path / "b" / item.name)
    second = Instance(tmp_path / "b", url).start()
    yield first, second, url
    for s in (first, second):
        if s.proc is not None and s.proc.poll() is None:
            s.stop()


def test_two_instances_serve_each_others_devices(cluster, tmp_path):
    a, b, database = cluster
    a_id, b_id = a.instance_id(), b.instance_id()
    assert a_id != b_id
    xvfb = Xvfb(width=320, height=240).start()
    agents = []
    try:
        xvfb.solid("#%02x%02x%02x" % BLUE)
        with logind_bus() as (bus, logind):
            # Device 1 on instance a (with logind and a desktop), device 2 on instance b.
            token = a.ctl("enroll-token", "create", check=True).stdout.strip()
            one = Agent(tmp_path / "agent1", env=bus.env(), settings={
                "server.fallback_urls": f"wss://127.0.0.1:{b.port}",
                "connection.ping_interval": "2s",
                "shadow.prompt_user": "false", "shadow.display": xvfb.display,
                "shadow.vnc_path": str(bin_dir() / "tether-vnc"),
                "shadow.ui_path": str(bin_dir() / "tether-shadow-ui")})
            agents.append(one)
            proc = one.register(token)
            assert proc.returncode == 0, proc.stderr
            dev1 = proc.stdout.strip()
            token = b.ctl("enroll-token", "create", check=True).stdout.strip()
            two = Agent(tmp_path / "agent2", settings={
                "server.fallback_urls": f"wss://127.0.0.1:{a.port}",
                "connection.ping_interval": "2s"})
            agents.append(two)
            proc = two.register(token)
            assert proc.returncode == 0, proc.stderr
            dev2 = proc.stdout.strip()
            one.start()
            two.start()
            one.wait_connected()
            two.wait_connected()

            # Either instance lists both, online, held by the right instance.
            for server in (a, b):
                wait_until(lambda s=server: all(
                    d.get("online") for d in s.devices().values()) and len(s.devices()) == 2,
                    timeout=15, what=f"both devices online at {server.url}")
                listed = server.devices()
                assert listed[dev1]["instance"] == a_id, listed[dev1]
                assert listed[dev2]["instance"] == b_id, listed[dev2]
            shown = json.loads(b.ctl("device", "show", dev1, "--json", check=True).stdout)
            assert shown["online"] and shown["hostname"], shown

            # A web user made on a logs in on b; the session works on a, and a logout on a
            # ends it on b: users and sessions are in the database.
            status, _, body = a.admin("POST", "/api/v1/users",
                                      {"name": "alice", "password": "correct horse 1"})
            assert status == 201, body
            status, _, body = b.request("POST", "/api/v1/login",
                                        {"name": "alice", "password": "correct horse 1"})
            assert status == 200, body
            session = body["session"]
            status, _, body = a.request("GET", "/api/v1/devices", token=session)
            assert status == 200 and len(body["devices"]) == 2, body
            status, _, body = a.request("POST", "/api/v1/logout", token=session)
            assert status == 200, body
            status, _, body = b.request("GET", "/api/v1/devices", token=session)
            assert status == 401, body

            # A reboot asked of b reaches the device on a, and its logind.
            started = time.monotonic()
            proc = b.ctl("device", "reboot", dev1)
            took = time.monotonic() - started
            assert proc.returncode == 0, proc.stdout + proc.stderr + a.log()[-3000:]
            assert logind.wait_for_calls("Reboot") == [[False]]
            print(f"\nreboot through the other instance answered in {took * 1000:.0f} ms")
            # A device's refusal travels back the same way.
            logind.fail_method("Reboot", "org.freedesktop.DBus.Error.AccessDenied",
                               "Permission denied by polkit")
            proc = b.ctl("device", "reboot", dev1)
            assert proc.returncode == 1
            assert "Permission denied by polkit" in proc.stderr, proc.stderr
            # And the other way round: a asks b's device (it has no logind: its error).
            proc = a.ctl("device", "reboot", dev2)
            assert proc.returncode == 1
            assert "logind" in proc.stderr, proc.stderr

            # The database drops every connection of both instances (as a database restart
            # would): they reconnect, and a request still crosses from b to a.
            dropped = psql(database, "SELECT count(pg_terminate_backend(pid)) FROM "
                           "pg_stat_activity WHERE application_name LIKE 'tether-server%'")
            assert int(dropped) >= 4, dropped  # a store and a cluster connection each
            for server in (a, b):
                server.wait_for_log("reconnected to the cluster database", timeout=20)
            proc = b.ctl("device", "poweroff", dev1)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert logind.wait_for_calls("PowerOff") == [[False]]

            # Shadowing a's device through b: vncsnapshot sees the desktop.
            port = free_port()
            ctl = subprocess.Popen(
                [str(bin_dir() / "tetherctl"), "--server", b.url, "--token-file",
                 str(b.token_file), "--ca-file", str(b.ca_file), "shadow", dev1, "--listen",
                 f"127.0.0.1:{port}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "HOME": str(tmp_path)})
            header = ""
            for line in ctl.stdout:
                header += line
                if line.startswith("listening on"):
                    break
            assert "listening on" in header, header + ctl.stderr.read()
            snap = tmp_path / "snap.jpg"
            result = subprocess.run(["vncsnapshot", "-quiet", f"127.0.0.1::{port}", str(snap)],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr + one.log()
            colour = snapshot_colour(snap)
            assert close_to(colour, BLUE), colour
            assert ctl.wait(timeout=20) == 0, ctl.stderr.read()
            session = re.search(r"session (\S+)", header).group(1)
            # The session was made (and relayed) on a, the holder; b's audit shows it too.
            assert f"shadowing session {session} requested" in a.log()
            assert f"shadowing session {session} requested" not in b.log()

            def audit_row():
                status, _, body = b.admin("GET", f"/api/v1/audit?device={dev1}")
                assert status == 200, body
                rows = [r for r in body["sessions"] if r["session"] == session]
                return rows[0] if rows and rows[0].get("ended_at") else None
            row = wait_until(audit_row, timeout=20, what="the session's audit row, ended")
            assert row["bytes_to_viewer"] > 0, row

            # A session waiting for its viewer, asked for through a: listed by b (it runs on
            # a, the holder) and ended through b.
            status, _, body = a.admin("POST", f"/api/v1/devices/{dev1}/shadow",
                                      {"viewer": "external"})
            assert status == 201, body
            session = body["session"]
            assert f"127.0.0.1:{a.port}" in body["viewer_url"], body
            status, _, body = b.admin("GET", "/api/v1/shadow/sessions")
            assert status == 200 and [s["session"] for s in body["sessions"]] == [session], body
            status, _, body = b.admin("DELETE", f"/api/v1/shadow/sessions/{session}")
            assert status == 200, body
            row = wait_until(audit_row, timeout=20, what="the second session ended")
            assert row["end_reason"] == "admin", row
            status, _, body = b.admin("DELETE", f"/api/v1/shadow/sessions/{session}")
            assert status == 404, body

        # Each instance counts what it passed on and what it served for the other.
        a_metrics, b_metrics = scrape(a), scrape(b)
        assert sample(b_metrics, 'tether_cluster_requests_total{direction="forwarded"}') >= 3
        assert sample(a_metrics, 'tether_cluster_requests_total{direction="served"}') >= 3
        # One instance links to the gateways (after the reconnection above, either may).
        assert (sample(a_metrics, "tether_cluster_gateway_leader")
                + sample(b_metrics, "tether_cluster_gateway_leader")) == 1
        assert sample(b_metrics, "tether_cluster_database_up") == 1
        for text, what in ((a_metrics, "instance a"), (b_metrics, "instance b")):
            promtool_check(text, what)

        # a dies: device 1 goes to b (its fallback) and shows online there.
        killed = time.monotonic()
        a.stop(sig=signal.SIGKILL)
        wait_until(lambda: (b.devices()[dev1].get("instance") == b_id
                            and b.devices()[dev1]["online"]),
                   timeout=30, what="device 1 online at instance b after a was killed")
        moved = time.monotonic() - killed
        listed = b.devices()
        assert len(listed) == 2 and all(d["online"] for d in listed.values()), listed
        assert listed[dev2]["instance"] == b_id
        print(f"after SIGKILL of instance a, its device was online at b in {moved:.2f} s")
        # The gateways were linked by a (the first to take the advisory lock) at the start.
        assert "scale-out: this instance links to the gateways" in a.log()
        assert "scale-out: another instance links to the gateways" in b.log()
        # With a gone, b links to them (it may have taken over already at the reconnection).
        wait_until(lambda: sample(scrape(b), "tether_cluster_gateway_leader") == 1, timeout=15,
                   what="instance b to link to the gateways")

        # a comes back; b stops (SIGTERM): its devices go to a, and count as offline at once
        # meanwhile (b removed its presence), not for dead_after.
        a.start()
        a_id2 = a.instance_id()
        stopped = time.monotonic()
        b.stop()
        wait_until(lambda: all(d["online"] and d["instance"] == a_id2
                               for d in a.devices().values()),
                   timeout=30, what="both devices online at a after b stopped")
        print(f"after SIGTERM of instance b, both devices were online at a in "
              f"{time.monotonic() - stopped:.2f} s")
        assert len(a.devices()) == 2
    finally:
        for agent in agents:
            agent.stop()
        xvfb.stop()


def test_a_missing_database_is_a_clear_error(tmp_path):
    """An instance whose database is unreachable says so and exits 1 (no half start)."""
    if not (bin_dir() / "tether-server").exists():
        pytest.skip("tether-server is not built")
    port = free_port()
    server = Server(tmp_path / "s", extra_args=[
        "--set", f"store.url=postgresql://tether@127.0.0.1:{port}/nothing?connect_timeout=2"])
    server.start(wait=False)
    assert server.wait_exit(timeout=30) == 1
    assert "127.0.0.1" in server.log() and "connect" in server.log().lower(), server.log()

