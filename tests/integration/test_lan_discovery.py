"""LAN discovery end to end in network namespaces (docs/protocol.md §3-4, issue 6).

One bridge (in a namespace of its own) joins a server namespace and two device namespaces
with veth pairs, all created and removed by this module (names carry the pid). The real
tether-server and tether-agent run inside them; tetherctl runs in the server's namespace.

    10.77.0.1  server   (tether-server on 8443, registration requests on 30001)
    10.77.0.2  device A (registered beforehand with a token)
    10.77.0.3  device B (unregistered; registered by `tetherctl scan --register`)
"""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_harness import Agent
from tether_harness import Server, bin_dir, run_ctl, wait_until

HERE = Path(__file__).resolve().parent
PID = os.getpid() % 100000
NS_SW, NS_SRV, NS_A, NS_B = (f"tlsw{PID}", f"tlsrv{PID}", f"tla{PID}", f"tlb{PID}")
BRIDGE = "br0"
SERVER_IP, A_IP, B_IP = "10.77.0.1", "10.77.0.2", "10.77.0.3"
MAC_A, MAC_B = "52:54:00:77:00:02", "52:54:00:77:00:03"


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def in_ns(ns):
    return ["ip", "netns", "exec", ns]


def netns_unavailable():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"tlprobe{PID}"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return "ip netns unavailable: " + r.stderr.strip()
    sh("ip", "netns", "del", probe, check=False)
    return None


def build_network():
    for ns in (NS_SW, NS_SRV, NS_A, NS_B):
        sh("ip", "netns", "add", ns)
    sh(*in_ns(NS_SW), "ip", "link", "add", BRIDGE, "type", "bridge")
    sh(*in_ns(NS_SW), "ip", "link", "set", BRIDGE, "up")
    for ns, ip, mac, tag in ((NS_SRV, SERVER_IP, "52:54:00:77:00:01", "s"),
                             (NS_A, A_IP, MAC_A, "a"), (NS_B, B_IP, MAC_B, "b")):
        outer = f"tl{tag}{PID}"
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", outer, "netns", NS_SW)
        sh(*in_ns(NS_SW), "ip", "link", "set", outer, "master", BRIDGE)
        sh(*in_ns(NS_SW), "ip", "link", "set", outer, "up")
        sh(*in_ns(ns), "ip", "link", "set", "eth0", "address", mac)
        sh(*in_ns(ns), "ip", "addr", "add", f"{ip}/24", "brd", "+", "dev", "eth0")
        sh(*in_ns(ns), "ip", "link", "set", "eth0", "up")
        sh(*in_ns(ns), "ip", "link", "set", "lo", "up")


def remove_network():
    for ns in (NS_SRV, NS_A, NS_B, NS_SW):
        sh("ip", "netns", "del", ns, check=False)


class NsServer(Server):
    def command(self):
        return [*in_ns(NS_SRV), *super().command()]

    @property
    def url(self):
        return f"https://{SERVER_IP}:{self.port}"


@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("lan")
    remove_network()
    build_network()
    server = NsServer(base / "server", port=8443, listen_host=SERVER_IP,
                      extra_args=["--set", "online.check_interval=0", "--set",
                                  "enroll.rate_per_minute=1000"])
    agents = []
    try:
        server.start()
        server.wait_for_log("registration requests on")
        yield {"server": server, "base": base, "agents": agents}
    finally:
        for agent in agents:
            try:
                agent.stop(sig=signal.SIGKILL)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        server.stop()
        print("---- server log ----\n" + server.log())
        remove_network()


def ctl(lan_env, *args, timeout=90):
    """tetherctl in the server's namespace; returns the CompletedProcess."""
    server = lan_env["server"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    full_env["HOME"] = str(lan_env["base"] / "home")
    started = time.monotonic()
    proc = subprocess.run([*in_ns(NS_SRV), str(bin_dir() / "tetherctl"), "--server", server.url,
                           "--token-file", str(server.token_file), "--ca-file",
                           str(server.ca_file), *args],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    print(f"tetherctl {' '.join(args)} -> {proc.returncode} in "
          f"{time.monotonic() - started:.2f}s\n{proc.stdout}{proc.stderr}")
    return proc


def ctl_json(lan_env, *args):
    proc = ctl(lan_env, *args, "--json")
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def make_agent(lan_env, ns, name):
    agent = Agent(lan_env["base"] / name,
                  settings={"discovery.auto_register": "off", "log.level": "debug"},
                  prefix=in_ns(ns))
    agent.state_dir.mkdir(parents=True, exist_ok=True)
    lan_env["agents"].append(agent)
    return agent


def api(lan_env, method, path, body=None):
    """The REST API, from the server's namespace (the server is not on this one's loopback)."""
    server = lan_env["server"]
    script = (
        "import http.client,json,ssl,sys\n"
        "ctx=ssl.create_default_context(cafile=sys.argv[1])\n"
        "c=http.client.HTTPSConnection(sys.argv[2],int(sys.argv[3]),context=ctx,timeout=30)\n"
        "h={'Authorization':'Bearer '+open(sys.argv[4]).read().strip(),"
        "'Content-Type':'application/json'}\n"
        "c.request(sys.argv[5],sys.argv[6],body=sys.argv[7] or None,headers=h)\n"
        "r=c.getresponse();d=r.read();print(json.dumps([r.status,json.loads(d) if d else None]))\n")
    proc = subprocess.run([*in_ns(NS_SRV), sys.executable, "-c", script, str(server.ca_file),
                           SERVER_IP, str(server.port), str(server.token_file), method, path,
                           json.dumps(body) if body is not None else ""],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def device_online(lan_env, device_id):
    status, body = api(lan_env, "GET", f"/api/v1/devices/{device_id}")
    return status == 200 and body["online"]


@pytest.fixture(scope="module")
def fleet(lan):
    """Device A enrolled with a token and running; device B running unregistered."""
    status, token = api(lan, "POST", "/api/v1/enroll-tokens", {})
    assert status == 201, token
    a = make_agent(lan, NS_A, "agent-a")
    reg = a.register(token["token"])
    assert reg.returncode == 0, reg.stdout + reg.stderr
    a.start()
    a.wait_connected()
    b = make_agent(lan, NS_B, "agent-b")
    b.start()
    b.wait_log("discovery responder on", timeout=20)
    a.wait_log("discovery responder on", timeout=20)
    lan["a"], lan["b"] = a, b
    lan["a_id"] = a.device_id()
    return lan


def by_address(job):
    return {d["address"]: d for d in job["devices"]}


def test_broadcast_scan_finds_both_agents(fleet):
    rc, job = ctl_json(fleet, "scan", "--timeout", "2s")
    assert rc == 0
    found = by_address(job)
    assert A_IP in found and B_IP in found, job
    assert found[A_IP]["mac"] == MAC_A and found[B_IP]["mac"] == MAC_B
    assert found[A_IP]["registered"] and found[A_IP]["registered_here"]
    assert found[A_IP]["device_id"] == fleet["a_id"]
    assert not found[B_IP]["registered"] and found[B_IP]["accepts_registration"]
    assert found[A_IP]["found_by"] == "udp"
    assert found[B_IP]["hostname"] and found[B_IP]["version"]


def test_tcp_range_scan_finds_both_agents(fleet):
    rc, job = ctl_json(fleet, "scan", "--range", "10.77.0.0/28", "--tcp", "--timeout", "1s")
    assert rc == 0
    assert job["total"] == 14 and job["probed"] == 14
    found = by_address(job)
    assert A_IP in found and B_IP in found, job
    assert found[B_IP]["found_by"] == "tcp" and found[B_IP]["mac"] == MAC_B


def test_scan_range_is_capped(fleet):
    proc = ctl(fleet, "scan", "--range", "10.0.0.0/8")
    assert proc.returncode != 0
    assert "too large" in proc.stderr


def test_scan_register_enrolls_the_unregistered_device(fleet):
    rc, job = ctl_json(fleet, "scan", "--broadcast", "10.77.0.255", "--register", "--wait",
                       "60s")
    found = by_address(job)
    assert found[A_IP]["registration"]["status"] == "already_registered"
    reg = found[B_IP]["registration"]
    assert reg["status"] == "online", job
    assert rc == 0
    b_id = found[B_IP]["device_id"]
    assert b_id and device_online(fleet, b_id)
    assert fleet["b"].device_id() == b_id
    fleet["b_id"] = b_id
    status, settings = api(fleet, "GET", "/api/v1/settings/auto-registration")
    assert status == 200 and settings["enabled"] is False
    assert settings["token_requests"]["issued"] >= 1
    assert "registration token request from " + B_IP in fleet["server"].log()


def test_auto_registration_switch(fleet):
    assert "auto-registration: off" in ctl(fleet, "auto-register", "status").stdout
    assert ctl(fleet, "auto-register", "on").returncode == 0
    assert "auto-registration: on" in ctl(fleet, "auto-register", "status").stdout
    assert (fleet["server"].state_dir / "auto-registration").read_text().strip() == "on"
    assert ctl(fleet, "auto-register", "off").returncode == 0
    assert api(fleet, "GET", "/api/v1/settings/auto-registration")[1]["enabled"] is False


def token_request(ns, fingerprint, mac="52:54:00:77:00:09"):
    proc = subprocess.run([*in_ns(ns), sys.executable, str(HERE / "lan_tools.py"), "token",
                           SERVER_IP, "30001", fingerprint, mac],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_token_requests_are_decided_by_the_server(fleet):
    ca_fp = hashlib.sha256(ssl.PEM_cert_to_DER_cert(
        fleet["server"].ca_file.read_text())).hexdigest()
    assert token_request(NS_A, "11" * 32)["status"] == 3  # another CA: wrong server
    assert token_request(NS_A, ca_fp)["status"] == 1  # ours, but nothing pending: disabled
    assert token_request(NS_A, "zero")["status"] == 1  # auto-registration is off
    assert ctl(fleet, "auto-register", "on").returncode == 0
    try:
        issued = token_request(NS_A, "zero")
        assert issued["status"] == 0 and issued["token"].startswith("tether1."), issued
        assert token_request(NS_A, ca_fp)["status"] == 1  # auto is for fingerprint zero only
    finally:
        assert ctl(fleet, "auto-register", "off").returncode == 0
    counters = api(fleet, "GET", "/api/v1/settings/auto-registration")[1]["token_requests"]
    assert counters["wrong_server"] >= 1 and counters["disabled"] >= 3
    assert "registration token request from " + A_IP in fleet["server"].log()


def online_key(fleet, device_id):
    db = sqlite3.connect(str(fleet["server"].state_dir / "tether.db"))
    try:
        return db.execute("SELECT online_key FROM devices WHERE id = ?", (device_id,)).fetchone()[0]
    finally:
        db.close()


def start_tool(ns, *args):
    proc = subprocess.Popen([*in_ns(ns), sys.executable, str(HERE / "lan_tools.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def stop_tool(proc):
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_online_up_down_and_forged(fleet):
    if "b_id" not in fleet:
        pytest.skip("needs device B registered by the scan test")
    a_id, b_id = fleet["a_id"], fleet["b_id"]
    wait_until(lambda: api(fleet, "GET", f"/api/v1/devices/{b_id}")[1]["inventory"],
               timeout=20, what="device B's inventory")
    fleet["b"].stop(sig=signal.SIGKILL)
    wait_until(lambda: not device_online(fleet, b_id), timeout=20, what="B's channel to close")

    rc, answer = ctl_json(fleet, "online", a_id, b_id)
    results = {d["id"]: d for d in answer["devices"]}
    assert results[a_id]["online"] and results[a_id]["source"] == "up"
    assert not results[b_id]["online"], results[b_id]
    assert B_IP in results[b_id]["probed"]
    assert rc != 0

    forger = start_tool(NS_B, "respond", "forge")
    try:
        rc, answer = ctl_json(fleet, "online", b_id, "--timeout", "1s")
    finally:
        seen = stop_tool(forger)
    result = answer["devices"][0]
    assert seen, "the forging responder got no probe"
    assert all(s["reply"] <= s["probe"] for s in seen)
    assert not result["online"] and result["forged_replies"] >= 1, result
    assert "forged reply ignored" in result["message"]

    honest = start_tool(NS_B, "respond", online_key(fleet, b_id))
    try:
        rc, answer = ctl_json(fleet, "online", b_id)
    finally:
        stop_tool(honest)
    result = answer["devices"][0]
    assert result["online"] and result["source"] == "udp" and result["answered_from"] == B_IP
    assert rc == 0
    shown = api(fleet, "GET", f"/api/v1/devices/{b_id}")[1]
    assert shown["last_seen_udp"], shown


def magic_for(mac):
    return "ff" * 6 + mac.replace(":", "") * 16


def test_wake_by_server_and_by_peer_agent(fleet):
    if "b_id" not in fleet:
        pytest.skip("needs device B registered by the scan test")
    b_id = fleet["b_id"]
    if device_online(fleet, b_id):
        fleet["b"].stop(sig=signal.SIGKILL)
        wait_until(lambda: not device_online(fleet, b_id), timeout=20, what="B offline")
    capture = start_tool(NS_B, "capture", "eth0", "20")
    try:
        rc, answer = ctl_json(fleet, "wake", b_id)
        # The relay's packets may come a moment after the server's answer: read until both
        # senders were seen (or the capture's own deadline).
        deadline = time.monotonic() + 10
        packets = []
        while time.monotonic() < deadline:
            line = capture.stdout.readline()
            if line.startswith("{"):
                packets.append(json.loads(line))
            sources = {p["src"] for p in packets if p["payload"] == magic_for(MAC_B)}
            if {SERVER_IP, A_IP} <= sources:
                break
    finally:
        capture.terminate()
        capture.communicate(timeout=10)
    print("captured:", packets)
    result = answer["devices"][0]
    by = [s["by"] for s in result["sent"]]
    assert "server" in by, result
    relay = [s for s in result["sent"] if s["by"].startswith("device ")]
    assert relay and fleet["a_id"] in relay[0]["by"], result
    server_sent = next(s for s in result["sent"] if s["by"] == "server")
    assert f"{B_IP}:9" in server_sent["to"] and "10.77.0.255:9" in server_sent["to"]
    good = [p for p in packets if p["payload"] == magic_for(MAC_B)]
    assert {p["src"] for p in good} >= {SERVER_IP, A_IP}, packets
    assert {p["dport"] for p in good if p["src"] == SERVER_IP} == {9, 7}
    assert any(p["dst"] == "10.77.0.255" and p["src"] == A_IP for p in good)


def test_wake_refuses_what_it_cannot_do(fleet):
    status, body = api(fleet, "POST", "/api/v1/wake", {"devices": ["ab" * 32]})
    assert status == 200
    assert body["devices"][0]["error"] == "no such device"
    status, body = api(fleet, "POST", "/api/v1/wake", {"devices": ["not-an-id"]})
    assert status == 400
