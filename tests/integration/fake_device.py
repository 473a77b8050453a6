"""A device on the UP channel played by python3-websockets, for tests of what the server asks
of devices (commands, settings) and how it takes their answers.

It is enrolled for real (a key and CSR made with openssl, a certificate issued by the server)
and speaks over mutual TLS like the agent; what it answers is up to the test.
"""

import asyncio

from tether_harness import DeviceKey, hello_message, recv_json, send_json, up_connect


def enroll(server, tmp_path, name="device", macs=("52:54:00:12:34:56",)):
    """A DeviceKey enrolled with `server` (hostname `name`)."""
    device = DeviceKey(tmp_path, name)
    status, _, body = device.enroll(server, server.create_token()["token"], hostname=name,
                                    macs=macs)
    assert status == 201, body
    return device


class FakeDevice:
    """One UP connection of an enrolled device."""

    def __init__(self, server, device):
        self.server = server
        self.device = device
        self.ws = None
        self.hello_ack = None
        self.trust_update = None
        self._next_id = 1

    @classmethod
    async def online(cls, server, device):
        """Connects, says hello, answers the trust_update: the device is online."""
        self = cls(server, device)
        self.ws = await up_connect(server, device)
        await send_json(self.ws, hello_message(device.device_id, self._id(),
                                               hostname=device.key.stem))
        self.hello_ack = await recv_json(self.ws)
        assert self.hello_ack["type"] == "result" and self.hello_ack["body"]["ok"], self.hello_ack
        self.trust_update = await recv_json(self.ws)
        assert self.trust_update["type"] == "trust_update", self.trust_update
        await self.answer(self.trust_update)
        return self

    def _id(self):
        msg_id = f"d{self._next_id}"
        self._next_id += 1
        return msg_id

    async def next_request(self, timeout=10):
        """The next message from the server."""
        return await recv_json(self.ws, timeout)

    async def expect_nothing(self, seconds):
        """Fails if the server sends anything within `seconds`."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"the server sent {message}")

    async def answer(self, request, data=None):
        body = {"ok": True}
        if data is not None:
            body["data"] = data
        await send_json(self.ws, {"v": 1, "type": "result", "id": request["id"], "body": body})

    async def refuse(self, request, code, message):
        await send_json(self.ws, {"v": 1, "type": "result", "id": request["id"],
                                  "body": {"ok": False,
                                           "error": {"code": code, "message": message}}})

    async def send(self, msg_type, body):
        await send_json(self.ws, {"v": 1, "type": msg_type, "id": self._id(), "body": body})

    async def close(self):
        await self.ws.close()


def run_ctl_async(server, *args):
    """tetherctl in a thread, so that the fake device's loop keeps answering meanwhile."""
    return asyncio.create_task(asyncio.to_thread(server.ctl, *args))


def request_async(server, method, path, body=None):
    """An admin REST call in a thread; gives (status, headers, body)."""
    return asyncio.create_task(asyncio.to_thread(server.admin, method, path, body))
