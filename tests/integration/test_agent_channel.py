"""The agent's UP channel against the real server: online, back after server restarts
(graceful and SIGKILL) without restarting the agent, revocation, certificate renewal."""

import json
import signal

from tether_harness import wait_until


def device(server, device_id):
    proc = server.ctl("device", "show", device_id, "--json", check=True)
    return json.loads(proc.stdout)


def online(server, device_id):
    return device(server, device_id)["online"]


def enrolled_agent(server, make_agent, **kwargs):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(**kwargs)
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    return agent, proc.stdout.strip()


def test_online_and_back_after_server_restarts(make_server, make_agent):
    server = make_server().start()
    agent, device_id = enrolled_agent(server, make_agent)
    agent.start()
    agent.wait_connected()
    wait_until(lambda: online(server, device_id), what="the device online in tetherctl")
    table = server.ctl("devices", check=True).stdout
    assert device_id[:12] in table and "yes" in table
    pid = agent.proc.pid

    for how in (signal.SIGTERM, signal.SIGKILL):
        server.stop(sig=how)
        wait_until(lambda: agent.connection_state() != "connected", timeout=20,
                   what="the agent to notice the server is gone")
        server.start()
        agent.wait_connected(timeout=30)
        wait_until(lambda: online(server, device_id), timeout=20,
                   what="the device online again")
    assert agent.proc.poll() is None and agent.proc.pid == pid  # never restarted
    if_restart = agent.log()
    assert "server restarting" in if_restart  # the graceful stop announced itself


def test_status_shows_why_it_is_waiting(make_server, make_agent):
    server = make_server().start()
    agent, _ = enrolled_agent(server, make_agent)
    server.stop()
    agent.start()
    wait_until(lambda: (agent.status().get("connection") or {}).get("last_error"), timeout=20,
               what="a last error in the status")
    status = agent.status()
    assert status["running"] is True
    assert status["connection"]["state"] in ("waiting", "connecting")
    text = agent.run("status").stdout
    assert "Last error:" in text


def test_revoked_device_is_dropped_and_cannot_come_back(make_server, make_agent):
    server = make_server().start()
    agent, device_id = enrolled_agent(server, make_agent)
    agent.start()
    agent.wait_connected()
    proc = server.ctl("device", "revoke", device_id)
    assert proc.returncode == 0, proc.stderr
    agent.wait_log("4003", timeout=10)
    wait_until(lambda: agent.connection_state() != "connected", timeout=10,
               what="the agent to be disconnected")
    assert "enrolled again" in agent.status()["connection"]["last_error"]
    # A fresh agent process with the same identity is refused too.
    agent.stop()
    agent.settings["connection.backoff_cap"] = "1s"
    agent.start()
    wait_until(lambda: (agent.status().get("connection") or {}).get("failures", 0) >= 2,
               timeout=20, what="repeated refused attempts")
    assert agent.connection_state() != "connected"
    assert not online(server, device_id)
    assert device(server, device_id)["revoked"] is True


def test_certificate_renewed_over_the_live_channel(make_server, make_agent):
    server = make_server(extra_args=["--set", "pki.device_cert_lifetime=20s"]).start()
    agent, device_id = enrolled_agent(server, make_agent)
    agent.start()
    agent.wait_connected()
    first = agent.status()
    serial = first["certificate"]["serial"]
    since = first["connection"]["since"]
    wait_until(lambda: agent.status()["certificate"]["serial"] != serial, timeout=40,
               what="a renewed certificate")
    after = agent.status()
    # Renewed while connected: the same channel, not a reconnect.
    assert after["connection"]["state"] == "connected"
    assert after["connection"]["since"] == since
    assert after["certificate"]["not_after"] > first["certificate"]["not_after"]
    wait_until(lambda: device(server, device_id)["cert_serial"] == after["certificate"]["serial"],
               timeout=10, what="the server's registry to hold the new serial")
    assert "device certificate renewed" in agent.log()
