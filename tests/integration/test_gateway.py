"""The gateway (issue 8): tether-server, tether-gateway and tether-agents as separate
processes. An agent that knows only the gateway enrolls through it (`enroll-token create
--via`), shows online, reboots through a mocked logind and is shadowed from `tetherctl shadow
--listen` with vncsnapshot and from the browser viewer; a revoked device is dropped by the
gateway within seconds; a gateway restart brings devices and the server's link back without a
storm; an agent with the server and the gateway listed fails over and comes back."""

import asyncio
import collections
import json
import os
import time

import pytest

from agent_harness import FleetSim
from browser_harness import Browser, ensure_playwright
from dbusmock_harness import logind_bus
from gateway_harness import joined_gateway
from test_shadow_agent import (BLUE, Rig, close_to, hex_colour, need, snapshot_colour,
                               vncsnapshot)
from tether_harness import bin_dir, free_port, wait_until
from vnc_harness import Xvfb

GREEN = (0x00, 0xA0, 0x50)
RED = (0xC8, 0x1E, 0x1E)


def need_gateway():
    if not (bin_dir() / "tether-gateway").exists():
        pytest.skip(f"tether-gateway is not built in {bin_dir()}")


def device_row(server, device_id):
    rows = json.loads(server.ctl("devices", "--json", check=True).stdout)
    rows = rows.get("devices", rows) if isinstance(rows, dict) else rows
    for row in rows:
        if row.get("id") == device_id:
            return row
    return None


def channel(agent):
    return agent.status().get("connection") or {}


class GatewayRig(Rig):
    """Rig (test_shadow_agent) whose agent enrolled through the gateway and knows only it."""

    def __init__(self, server, gateway, make_agent, display, agent_env=None, **settings):
        self.server = server
        self.gateway = gateway
        self.display = display
        proc = server.ctl("enroll-token", "create", "--via", "gw1")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        token = proc.stdout.strip()
        base = {"shadow.prompt_user": "false", "discovery.port": "0",
                "shadow.vnc_path": str(bin_dir() / "tether-vnc"),
                "shadow.ui_path": str(bin_dir() / "tether-shadow-ui"), "log.level": "debug"}
        if display is not None:
            base["shadow.display"] = display
        base.update(settings)
        self.agent = make_agent(settings=base, env=agent_env)
        proc = self.agent.register(token)
        assert proc.returncode == 0, proc.stdout + proc.stderr + "\n" + gateway.log()
        self.device_id = proc.stdout.strip()
        self.agent.start()
        self.agent.wait_connected()


@pytest.fixture
def make_gateway(tmp_path):
    """Joins gateways to servers; stops them after the test, whatever happened."""
    need_gateway()
    started = []

    def make(server, **kwargs):
        gw = joined_gateway(server, tmp_path, on_start=started.append, **kwargs)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(server, make_gateway):
    return make_gateway(server)


@pytest.fixture
def xvfb():
    need("Xvfb", "xdotool", "xsetroot", "xdpyinfo", binaries=("tether-shadow-ui",))
    x = Xvfb(width=640, height=480).start()
    x.solid(hex_colour(BLUE))
    yield x
    x.stop()


def test_an_agent_behind_the_gateway_enrolls_reboots_and_is_shadowed(server, gateway,
                                                                      make_agent, xvfb,
                                                                      tmp_path):
    need("vncsnapshot", "convert")
    with logind_bus() as (bus, logind):
        rig = GatewayRig(server, gateway, make_agent, xvfb.display, agent_env=bus.env())
        # The agent's only endpoint is the gateway's: enrollment put it there.
        conn = channel(rig.agent)
        assert conn.get("endpoint") == gateway.wss_url, conn
        assert conn.get("via_gateway") is True and conn.get("server_reachable") is True, conn
        assert gateway.wss_url in (rig.agent.run("status").stdout), rig.agent.run("status").stdout

        # Online on the server, through the gateway.
        row = wait_until(lambda: (r := device_row(server, rig.device_id)) and r.get("online")
                         and r, what="the device online on the server")
        assert row["connected_via"] == "gateway:gw1", row
        assert "gw1" in server.ctl("devices").stdout
        show = rig.device()
        assert show["connected_via"] == "gateway:gw1", show
        gateways = json.loads(server.ctl("gateway", "list", "--json", check=True).stdout)
        gateways = gateways.get("gateways", gateways) if isinstance(gateways, dict) else gateways
        assert [(g["name"], g["link"], g["devices"]) for g in gateways] == [("gw1", "connected", 1)]

        # A command goes down through the gateway and its answer comes back.
        proc = server.ctl("device", "reboot", rig.device_id)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert logind.wait_for_calls("Reboot") == [[False]]

        # Shadowing: the device's tunnel and tetherctl's meet at the gateway.
        port = free_port()
        proc, header = rig.ctl_shadow(port)
        try:
            session = header.split("session ")[1].split()[0]
            snap = tmp_path / "snap.png"
            result = vncsnapshot(port, snap)
            if result.returncode != 0:
                proc.terminate()
                raise AssertionError(f"{result.stderr}{proc.communicate()[1]}\n--- server\n"
                                     f"{server.log()[-3000:]}\n--- gateway\n{gateway.log()}")
            assert close_to(snapshot_colour(snap), BLUE), snapshot_colour(snap)
            # The splice was the gateway's.
            gateway.wait_for_log(f"tunnel {session}: spliced")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        rows = wait_until(lambda: [r for r in rig.audit() if r.get("ended_at")], timeout=20,
                          what=f"the session to end in the audit: {rig.audit()}")
        assert rows[0]["viewer"] == "external", rows
        assert rows[0]["session"] == session, rows
        # The gateway's splice ends the session: the viewer left first.
        assert rows[0]["end_reason"] in ("viewer_closed", "device_closed"), rows
        rig.agent_idle()


def test_the_browser_viewer_through_the_gateway(server, gateway, make_agent, tmp_path):
    need("Xvfb", "xdotool", "xsetroot", "xdpyinfo")
    modules = ensure_playwright()
    from test_webapp import login_with_token  # noqa: PLC0415
    from test_webapp_real_chain import disconnect, open_viewer, wait_for_colour  # noqa: PLC0415
    x = Xvfb(width=640, height=480).start()
    try:
        x.solid(hex_colour(GREEN))
        rig = GatewayRig(server, gateway, make_agent, x.display)
        wait_until(lambda: rig.device()["online"], what="the device online")

        async def run():
            browser = await Browser(modules).start()
            try:
                await login_with_token(browser, server)
                elapsed = await open_viewer(browser, rig, "#shadow", GREEN)
                print(f"\nbrowser over the gateway: Shadow clicked to the first picture: "
                      f"{elapsed * 1000:.0f} ms")
                await asyncio.to_thread(x.solid, hex_colour(RED))
                await wait_for_colour(browser, RED, "viewer-gateway-change.png")
                await disconnect(browser, rig)
            finally:
                await browser.close()

        asyncio.run(run())
        rows = wait_until(lambda: [r for r in rig.audit() if r.get("ended_at")], timeout=20,
                          what=f"the session in the audit: {rig.audit()}")
        assert rows[0]["viewer"] == "browser", rows
    finally:
        x.stop()


def test_a_revoked_device_is_dropped_by_the_gateway_within_seconds(server, gateway,
                                                                  make_agent):
    rig = GatewayRig(server, gateway, make_agent, None)
    wait_until(lambda: rig.device()["online"], what="the device online")
    started = time.monotonic()
    proc = server.ctl("device", "revoke", rig.device_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_until(lambda: channel(rig.agent).get("state") != "connected", timeout=10,
               what="the agent's channel to end")
    elapsed = time.monotonic() - started
    print(f"\nrevoked device dropped by the gateway after {elapsed * 1000:.0f} ms")
    # And it stays out: the gateway refuses it when it tries again.
    gateway.wait_for_log("is not known to the server or revoked", timeout=20)
    assert "4003" in json.dumps(rig.agent.status()) or "revoked" in rig.agent.log()


def test_gateway_restart_devices_and_server_come_back_without_a_storm(make_server, tmp_path,
                                                                      make_agent, make_gateway):
    server = make_server(extra_args=["--set", "enroll.rate_per_minute=100000"]).start()
    gateway = make_gateway(server)
    count, spread_s = 60, 6
    sim = FleetSim(server, tmp_path / "fleet", count, restart_spread=f"{spread_s}s")
    sim.args += ["--connect", gateway.wss_url]
    sim.start()
    try:
        rig = GatewayRig(server, gateway, make_agent, None)
        wait_until(lambda: sim.connected() == count, timeout=120, interval=0.5,
                   what=f"{count} simulated agents connected to the gateway")
        wait_until(lambda: rig.device()["online"], what="the real agent online")
        restart_at_ms = time.time() * 1000
        gateway.stop()
        wait_until(lambda: sim.connected() < count, timeout=20, interval=0.2,
                   what="the simulator to see the gateway go")
        gateway.start()
        back_at_ms = time.time() * 1000
        server.wait_for_log("gateway gw1: link open", timeout=30)
        wait_until(lambda: sim.connected() == count, timeout=90, interval=0.5,
                   what=f"all {count} back through the gateway")
        wait_until(lambda: rig.device()["online"], timeout=60, what="the real agent online again")
        assert rig.device()["connected_via"] == "gateway:gw1"
        time.sleep(1.5)  # one more report
        attempts = [a for a in sim.read_report()["attempts"] if a >= restart_at_ms]
    finally:
        sim.stop()
    def histogram(since_ms):
        per_second = collections.Counter(int((a - since_ms) // 1000) for a in attempts
                                         if a >= since_ms)
        return [per_second.get(s, 0) for s in range(max(per_second, default=0) + 1)]
    whole, live = histogram(restart_at_ms), histogram(back_at_ms)
    print(f"\nreconnect attempts per second after the gateway restart ({len(attempts)} "
          f"attempts, {count} agents, restart spread {spread_s} s): {whole}; "
          f"from the moment it listened again: {live}")
    assert len(attempts) >= count
    # No storm: the attempts that reach the running gateway are spread out; a storm would put
    # nearly all of them into one second.
    assert max(live) <= 0.5 * count, live
    assert sum(1 for n in whole[:spread_s] if n > 0) >= spread_s - 2, whole


def test_failover_to_the_gateway_and_back(make_server, make_agent, make_gateway):
    server = make_server().start()
    gateway = make_gateway(server)
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(settings={"server.fallback_urls": gateway.wss_url,
                                 "server.primary_retry": "1s", "discovery.port": "0"})
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    device_id = proc.stdout.strip()
    agent.start()
    agent.wait_connected()
    assert channel(agent).get("endpoint_index") == 0, channel(agent)

    server.stop()
    # The server is gone: the agent moves to the gateway (whose server is unavailable too).
    wait_until(lambda: channel(agent).get("endpoint_index") == 1
               and channel(agent).get("state") == "connected", timeout=30,
               what=f"the agent on the gateway: {channel(agent)}\n{agent.log()}")
    assert channel(agent).get("via_gateway") is True
    assert channel(agent).get("server_reachable") is False, channel(agent)

    server.start()
    # Back: the agent's probe finds the server and it returns to its first endpoint.
    wait_until(lambda: channel(agent).get("endpoint_index") == 0
               and channel(agent).get("state") == "connected", timeout=40,
               what=f"the agent back on the server: {channel(agent)}\n{agent.log()}")
    row = wait_until(lambda: (r := device_row(server, device_id)) and r.get("online") and r,
                     timeout=20, what="the device online")
    assert row["connected_via"] == "direct", row
    assert os.path.exists(gateway.state_dir / "gateway.key")
