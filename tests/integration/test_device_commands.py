"""Reboot and power off through the REST API and tetherctl, answered by a fake device over a
real UP channel: the answer the admin sees is the one the device gave, and a device that
says nothing or goes away gives an error, not a hang."""

import asyncio
import json
import time

from fake_device import FakeDevice, enroll, request_async, run_ctl_async

ACCESS_DENIED = "org.freedesktop.login1.AccessDenied: no"


def test_reboot_accepted(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        ctl = run_ctl_async(server, "device", "reboot", device.device_id)
        request = await dev.next_request()
        assert request["type"] == "command"
        assert request["body"]["name"] == "reboot"
        await dev.answer(request, {"action": "reboot"})
        out = await ctl
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "reboot requested: the device accepted"

        # The API's own answer, as --json prints it.
        ctl = run_ctl_async(server, "device", "poweroff", "device", "--json")  # by name
        request = await dev.next_request()
        assert request["body"]["name"] == "poweroff"
        await dev.answer(request, {"action": "poweroff"})
        out = await ctl
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"device": device.device_id, "action": "poweroff",
                                          "result": {"action": "poweroff"}}
        await dev.close()

    asyncio.run(run())
    assert "reboot of device " + device.device_id + ": the device accepted" in server.log()


def test_reboot_refused_by_logind(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/reboot", {})
        request = await dev.next_request()
        await dev.refuse(request, "permission_denied", ACCESS_DENIED)
        status, _, body = await call
        assert status == 502
        assert body == {"error": {"code": "permission_denied",
                                  "message": "the device could not reboot: " + ACCESS_DENIED}}

        ctl = run_ctl_async(server, "device", "reboot", device.device_id)
        await dev.refuse(await dev.next_request(), "permission_denied", ACCESS_DENIED)
        out = await ctl
        assert out.returncode == 1
        assert "the device could not reboot: " + ACCESS_DENIED in out.stderr
        assert out.stdout == ""

        ctl = run_ctl_async(server, "device", "poweroff", device.device_id, "--json")
        await dev.refuse(await dev.next_request(), "unavailable", "logind is not running")
        out = await ctl
        assert out.returncode == 1
        assert json.loads(out.stdout)["error"]["code"] == "unavailable"
        assert "logind is not running" in out.stderr
        await dev.close()

    asyncio.run(run())


def test_reboot_of_an_offline_device(server, tmp_path):
    device = enroll(server, tmp_path)
    status, _, body = server.admin("POST", f"/api/v1/devices/{device.device_id}/reboot", {})
    assert status == 409
    assert body["error"]["code"] == "conflict"
    out = server.ctl("device", "reboot", device.device_id)
    assert out.returncode == 1
    assert "offline" in out.stderr


def test_a_device_that_never_answers_gets_504_in_time(make_server, tmp_path):
    server = make_server(extra_args=["--set", "up.request_timeout=2s"]).start()
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        started = time.monotonic()
        call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/reboot", {})
        request = await dev.next_request()
        assert request["body"]["name"] == "reboot"
        status, _, body = await call  # never answered
        elapsed = time.monotonic() - started
        assert status == 504, body
        assert body["error"]["code"] == "timeout"
        assert "did not answer" in body["error"]["message"]
        # The hub's request timeout (2 s, expired by a one-second tick), well before the
        # listener's backstop (timeout + 5 s).
        assert 1.9 <= elapsed < 5, elapsed

        ctl = run_ctl_async(server, "device", "reboot", device.device_id)
        late = await dev.next_request()
        out = await ctl
        assert out.returncode == 1
        assert "did not answer" in out.stderr and "504" in out.stderr
        # An answer after the deadline is dropped and the channel carries on.
        await dev.answer(late, {"action": "reboot"})
        call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/reboot", {})
        await dev.answer(await dev.next_request(), {"action": "reboot"})
        assert (await call)[0] == 200
        await dev.close()

    asyncio.run(run())


def test_a_device_that_goes_away_mid_request(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        started = time.monotonic()
        ctl = run_ctl_async(server, "device", "reboot", device.device_id)
        request = await dev.next_request()
        assert request["body"]["name"] == "reboot"
        await dev.close()  # as a device that went down before answering would
        out = await ctl
        assert out.returncode == 1
        assert "closed before it answered" in out.stderr and "502" in out.stderr
        assert time.monotonic() - started < 10  # the server's 30 s timeout did not run out

    asyncio.run(run())


def test_a_client_that_hangs_up_while_waiting_does_not_disturb_the_server(server, tmp_path):
    """The answer for an exchange whose connection is gone is dropped, and the next exchange
    (possibly on a reused connection slot) gets its own answer."""
    device = enroll(server, tmp_path)

    async def run():
        import http.client
        dev = await FakeDevice.online(server, device)
        conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                           context=server.ssl_context(), timeout=15)
        conn.request("POST", f"/api/v1/devices/{device.device_id}/reboot", body=b"{}",
                     headers={"Authorization": f"Bearer {server.admin_token()}",
                              "Content-Type": "application/json"})
        first = await dev.next_request()
        conn.close()  # gone before the device answers
        await asyncio.sleep(0.3)
        call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/poweroff", {})
        second = await dev.next_request()
        await dev.answer(first, {"action": "reboot"})
        await dev.answer(second, {"action": "poweroff"})
        status, _, body = await call
        assert status == 200 and body["action"] == "poweroff"
        await dev.close()

    asyncio.run(run())
    assert server.proc.poll() is None


def test_a_request_waiting_when_the_server_stops_is_answered(server, tmp_path):
    device = enroll(server, tmp_path)

    async def run():
        dev = await FakeDevice.online(server, device)
        started = time.monotonic()
        call = request_async(server, "POST", f"/api/v1/devices/{device.device_id}/reboot", {})
        await dev.next_request()
        server.proc.terminate()
        status, _, body = await call
        assert status == 502, body
        assert "server restarting" in body["error"]["message"]
        assert time.monotonic() - started < 5

    asyncio.run(run())
    assert server.wait_exit() == 0
