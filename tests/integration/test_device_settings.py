"""Device settings managed by the server, with a fake device over a real UP channel: pushed at
once when it is online (stored only when it accepts), kept and pushed after the next hello
when it is offline, and shown by tetherctl next to what the device reports."""

import asyncio
import json

from fake_device import FakeDevice, enroll, request_async, run_ctl_async

REFUSAL = ("shadow.allowed: the local policy (/etc/tether/agent.conf:3) says false; "
           "the server cannot weaken it")


def settings_of(server, device_id):
    status, _, body = server.admin("GET", f"/api/v1/devices/{device_id}/settings")
    assert status == 200, body
    return body


def test_set_while_online_is_applied_stored_and_shown(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        ctl = run_ctl_async(server, "device", "settings", device.device_id,
                            "--set", "shadow.view_only=true", "--set", "log.level=debug")
        request = await dev.next_request()
        assert request["type"] == "settings"
        assert request["body"] == {"values": {"shadow.view_only": "true", "log.level": "debug"}}
        effective = {"shadow.view_only": "true", "log.level": "debug", "shadow.allowed": "true"}
        await dev.answer(request, {
            "changed": {"shadow.view_only": {"old": "false", "new": "true"},
                        "log.level": {"old": "info", "new": "debug"}},
            "values": effective})
        out = await ctl
        assert out.returncode == 0, out.stderr
        assert "changed shadow.view_only: false -> true" in out.stdout
        assert "changed log.level: info -> debug" in out.stdout

        # --get asks the device (get_settings) and shows it beside the server's values.
        ctl = run_ctl_async(server, "device", "settings", "device", "--get")
        request = await dev.next_request()
        assert request["type"] == "command" and request["body"]["name"] == "get_settings"
        await dev.answer(request, {"values": effective, "origins": {
            "shadow.view_only": "server", "log.level": "server",
            "shadow.allowed": "/etc/tether/agent.conf:3"}})
        out = await ctl
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["KEY", "EFFECTIVE", "ORIGIN", "SERVER", "VALUE"]
        rows = {line.replace("*", "").split()[0]: line for line in lines[1:]}
        assert rows["shadow.view_only"].startswith("* ")
        assert rows["shadow.view_only"].split()[2:] == ["true", "server", "true"]
        assert rows["shadow.allowed"].split() == ["shadow.allowed", "true",
                                                  "/etc/tether/agent.conf:3", "-"]

        # The same over the API, as --json prints it.
        call = request_async(server, "GET", f"/api/v1/devices/{device.device_id}/settings")
        request = await dev.next_request()
        await dev.answer(request, {"values": effective, "origins": {}})
        status, _, body = await call
        assert status == 200
        assert body["server"] == {"shadow.view_only": "true", "log.level": "debug"}
        assert body["effective"] == effective and body["online"] is True

        # Unsetting sends the whole remaining document.
        ctl = run_ctl_async(server, "device", "settings", device.device_id, "--unset",
                            "log.level", "--json")
        request = await dev.next_request()
        assert request["body"] == {"values": {"shadow.view_only": "true"}}
        await dev.answer(request, {"changed": {"log.level": {"old": "debug", "new": "info"}},
                                   "values": {"shadow.view_only": "true"}})
        out = await ctl
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["applied"] is True
        await dev.close()

    asyncio.run(run())


def test_a_refusal_stores_nothing(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        call = request_async(server, "PUT", f"/api/v1/devices/{device.device_id}/settings",
                             {"set": {"shadow.allowed": "true"}})
        request = await dev.next_request()
        await dev.refuse(request, "permission_denied", REFUSAL)
        status, _, body = await call
        assert status == 409
        assert body["error"]["code"] == "permission_denied"
        assert REFUSAL in body["error"]["message"]

        ctl = run_ctl_async(server, "device", "settings", device.device_id,
                            "--set", "shadow.bogus=1")
        await dev.refuse(await dev.next_request(), "bad_value", "shadow.bogus: unknown setting")
        out = await ctl
        assert out.returncode == 1
        assert "shadow.bogus: unknown setting" in out.stderr
        await dev.close()

    asyncio.run(run())
    # Offline now, so the server's side alone: nothing was stored.
    body = settings_of(server, device.device_id)
    assert body["server"] == {} and body["online"] is False


def test_bad_settings_are_refused_by_the_server(server, tmp_path):
    device = enroll(server, tmp_path)
    path = f"/api/v1/devices/{device.device_id}/settings"
    for change in ({"set": {"nodot": "1"}}, {"set": {"a.b": "two\nlines"}},
                   {"set": {"a.b": 1}}, {"unset": "a.b"}):
        status, _, body = server.admin("PUT", path, change)
        assert status == 400, (change, body)
    out = server.ctl("device", "settings", device.device_id, "--set", "novalue")
    assert out.returncode == 2
    assert settings_of(server, device.device_id)["server"] == {}


def test_set_while_offline_is_pushed_after_the_next_hello(server, tmp_path):
    device = enroll(server, tmp_path)
    out = server.ctl("device", "settings", device.device_id, "--set", "shadow.view_only=true",
                     "--set", "shadow.prompt_timeout=20s")
    assert out.returncode == 0, out.stderr
    assert "pending until the device is online" in out.stdout
    status, _, body = server.admin("PUT", f"/api/v1/devices/{device.device_id}/settings",
                                   {"unset": ["shadow.prompt_timeout"],
                                    "set": {"log.level": "debug"}})
    assert status == 202 and body == {"applied": False, "pending": True}
    shown = server.ctl("device", "settings", device.device_id)
    assert shown.returncode == 0
    assert "offline" in shown.stderr
    assert "* shadow.view_only" in shown.stdout

    async def run():
        # After HelloAck and trust_update (FakeDevice.online reads both) comes the whole
        # document, as one settings request.
        dev = await FakeDevice.online(server, device)
        request = await dev.next_request()
        assert request["type"] == "settings"
        assert request["body"] == {"values": {"shadow.view_only": "true", "log.level": "debug"}}
        await dev.answer(request, {"changed": {}, "values": {}})
        await dev.expect_nothing(0.5)
        await dev.close()

        # Every hello pushes it again; a refusal then is recorded and shown.
        dev = await FakeDevice.online(server, device)
        request = await dev.next_request()
        assert request["type"] == "settings"
        await dev.refuse(request, "permission_denied", REFUSAL)
        server.wait_for_log("did not apply its server settings")
        await dev.close()

    asyncio.run(run())
    status, _, shown = server.admin("GET", f"/api/v1/devices/{device.device_id}")
    assert shown["settings_error"] == "permission_denied: " + REFUSAL
    out = server.ctl("device", "show", device.device_id)
    assert "settings error" in out.stdout and REFUSAL in out.stdout
    assert settings_of(server, device.device_id)["settings_error"] == "permission_denied: " + REFUSAL


def test_no_push_for_a_device_without_server_settings(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        await dev.expect_nothing(1.0)
        await dev.close()

    asyncio.run(run())


def test_a_slow_answer_still_reaches_the_admin(server, tmp_path):
    """A GET has no body, so lws's own 20 s limit on a request's arrival would still be
    running while it waits for the device; the server lifts it, and the default 30 s
    request timeout is what bounds the wait."""
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        ctl = run_ctl_async(server, "device", "settings", device.device_id, "--json")
        request = await dev.next_request()
        await asyncio.sleep(22)
        await dev.answer(request, {"values": {"log.level": "info"}, "origins": {}})
        out = await ctl
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["effective"] == {"log.level": "info"}
        await dev.close()

    asyncio.run(run())
