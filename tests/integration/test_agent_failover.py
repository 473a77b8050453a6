"""The agent's endpoint list against the real server (no gateway needed): a dead preferred
endpoint sends it to the fallback; when the preferred endpoint comes back, the agent's probe
notices and it goes back. Endpoint 0 is a TCP forwarder this test starts and stops in front
of the same server that endpoint 1 names directly. A fake gateway (a few lines of Python in
front of the real server) checks how the agent handles gateway_status."""

import asyncio
import json
import ssl
import subprocess
import threading
import time
from pathlib import Path

import websockets

from tether_harness import UP_SUBPROTOCOL, free_port, wait_until


class TcpForwarder:
    """A plain TCP forwarder on 127.0.0.1 to `target_port`, on its own asyncio loop (thread).
    stop() closes the listener and every forwarded connection, as a dead host would look."""

    def __init__(self, target_port, port=None):
        self.target_port = target_port
        self.port = port or free_port()
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = None
        self._writers = set()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer):
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def _start(self):
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def _stop(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()  # a reset, not a polite close: the host is gone
        self._writers.clear()

    def start(self):
        self._call(self._start())
        return self

    def stop(self):
        self._call(self._stop())

    def close(self):
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def enroll(server, make_agent, settings):
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(settings=settings)
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    return agent, proc.stdout.strip()


def connection(agent):
    return agent.status().get("connection") or {}


def online(server, device_id):
    proc = server.ctl("device", "show", device_id, "--json", check=True)
    return json.loads(proc.stdout)["online"]


def connected_at(agent, index):
    c = connection(agent)
    return c.get("state") == "connected" and c.get("endpoint_index") == index


def test_dead_primary_moves_the_agent_to_the_fallback(make_server, make_agent):
    server = make_server().start()
    dead = f"wss://127.0.0.1:{free_port()}"
    direct = f"wss://127.0.0.1:{server.port}"
    agent, device_id = enroll(server, make_agent, {"server.url": dead,
                                                   "server.fallback_urls": direct,
                                                   "server.primary_retry": "1s"})
    agent.start()
    wait_until(lambda: connected_at(agent, 1), timeout=30,
               what=f"the agent connected on endpoint 1; its log:\n{agent.log()}")
    c = connection(agent)
    assert c["endpoint"] == direct
    assert c["endpoints"] == [dead, direct]
    assert c["via_gateway"] is False
    assert c["server_reachable"] is True
    wait_until(lambda: online(server, device_id), what="the device online")
    text = agent.run("status").stdout
    assert "Endpoint:     2 of 2 (fallback)" in text, text
    assert direct + " (*)" in text, text
    # Probes of the dead primary (every second) fail: the agent stays where it is. There is
    # no event to wait for here, so watch it for a few probe intervals.
    time.sleep(3)
    assert connected_at(agent, 1), connection(agent)
    assert "returning to the preferred endpoint" not in agent.log()


def test_back_to_the_primary_when_it_returns(make_server, make_agent):
    server = make_server().start()
    forwarder = TcpForwarder(server.port).start()
    try:
        primary = f"wss://127.0.0.1:{forwarder.port}"
        direct = f"wss://127.0.0.1:{server.port}"
        agent, device_id = enroll(server, make_agent, {"server.url": primary,
                                                       "server.fallback_urls": direct,
                                                       "server.primary_retry": "1s"})
        agent.start()
        wait_until(lambda: connected_at(agent, 0), timeout=30,
                   what=f"the agent connected on endpoint 0; its log:\n{agent.log()}")
        assert connection(agent)["endpoint"] == primary
        assert forwarder.accepted >= 1
        wait_until(lambda: online(server, device_id), what="the device online")

        # The preferred endpoint dies: the agent moves to the fallback soon (no backoff).
        t0 = time.monotonic()
        forwarder.stop()
        wait_until(lambda: connected_at(agent, 1), timeout=30,
                   what=f"the agent on the fallback; its log:\n{agent.log()}")
        print(f"moved to the fallback in {time.monotonic() - t0:.2f} s")
        wait_until(lambda: online(server, device_id), what="the device online via the fallback")

        # It comes back: a probe notices within a few intervals and the agent returns.
        before = forwarder.accepted
        t0 = time.monotonic()
        forwarder.start()
        wait_until(lambda: connected_at(agent, 0), timeout=20,
                   what=f"the agent back on endpoint 0; its log:\n{agent.log()}")
        print(f"back on the primary in {time.monotonic() - t0:.2f} s")
        assert forwarder.accepted >= before + 2  # the probe, then the channel
        assert "returning to the preferred endpoint" in agent.log()
        wait_until(lambda: online(server, device_id), what="the device online via the primary")
        assert agent.proc.poll() is None
    finally:
        forwarder.close()


class FakeGateway:
    """Stands in for tether-gateway on the device side (docs/protocol.md §2.2, gateway_status):
    a TLS WebSocket endpoint with a certificate from the installation CA that forwards UP
    messages unchanged to the real server over its own connection (made with the device's
    credentials, as only the gateway's routing matters here) while its "link" is up, drops
    what the device sends while it is down, and tells the device with gateway_status."""

    def __init__(self, server, device_dir, work_dir):
        self.server = server
        self.device_dir = Path(device_dir)
        self.port = free_port()
        self.chain, self.key = self._issue_certificate(Path(work_dir))
        self.link_up = False
        self.accepted = 0
        self.from_device = []  # (link up?, message type) of everything the device sent
        self.device_ws = None
        self.upstream = None
        self._pump = None
        self._ws_server = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _issue_certificate(self, work):
        work.mkdir(parents=True, exist_ok=True)
        key, csr, crt, ext = (work / n for n in ("gw.key", "gw.csr", "gw.crt", "gw.ext"))
        chain = work / "gw-chain.pem"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
        ca_crt, ca_key = self.server.state_dir / "ca.crt", self.server.state_dir / "ca.key"
        for cmd in (["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                     "-out", str(key)],
                    ["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=fake-gateway",
                     "-out", str(csr)],
                    ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey",
                     str(ca_key), "-set_serial", str(int(time.time())), "-days", "2",
                     "-extfile", str(ext), "-out", str(crt)]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
        chain.write_text(crt.read_text() + ca_crt.read_text())
        return chain, key

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=20)

    async def _send_status(self):
        if self.device_ws is not None:
            await self.device_ws.send(json.dumps({
                "v": 1, "type": "gateway_status", "id": f"g{int(time.monotonic() * 1000)}",
                "body": {"server": "connected" if self.link_up else "unavailable"}}))

    async def _open_upstream(self):
        ctx = self.server.ssl_context(self.device_dir / "device.crt",
                                      self.device_dir / "device.key")
        self.upstream = await websockets.connect(
            f"wss://127.0.0.1:{self.server.port}/up", ssl=ctx, subprotocols=[UP_SUBPROTOCOL],
            ping_interval=None)
        self._pump = asyncio.ensure_future(self._pump_down(self.upstream))

    async def _close_upstream(self):
        if self.upstream is not None:
            await self.upstream.close()
            self.upstream = None

    async def _pump_down(self, upstream):
        try:
            async for text in upstream:
                if self.device_ws is not None:
                    await self.device_ws.send(text)
        except websockets.ConnectionClosed:
            pass

    async def _handler(self, ws, *_):
        self.accepted += 1
        self.device_ws = ws
        await self._send_status()
        if self.link_up:
            await self._open_upstream()
        try:
            async for text in ws:
                self.from_device.append((self.upstream is not None, json.loads(text)["type"]))
                if self.upstream is not None:
                    await self.upstream.send(text)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.device_ws = None
            await self._close_upstream()

    async def _start(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.chain), str(self.key))
        ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS with the device certificate
        ctx.load_verify_locations(str(self.server.ca_file))
        self._ws_server = await websockets.serve(self._handler, "127.0.0.1", self.port, ssl=ctx,
                                                 subprotocols=[UP_SUBPROTOCOL])

    async def _set_link(self, up):
        self.link_up = up
        if self.device_ws is None:
            return
        if up:
            await self._open_upstream()  # before "connected": the hello that follows must pass
        else:
            await self._close_upstream()
        await self._send_status()

    async def _stop(self):
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        await self._close_upstream()

    @property
    def url(self):
        return f"wss://127.0.0.1:{self.port}"

    def start(self):
        self._call(self._start())
        return self

    def set_link(self, up):
        self._call(self._set_link(up))

    def sent_while(self, link_up):
        return [t for up, t in list(self.from_device) if up == link_up]

    def close(self):
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


def test_gateway_status_unavailable_then_connected(make_server, make_agent, tmp_path):
    server = make_server().start()
    token = server.ctl("enroll-token", "create", check=True).stdout.strip()
    agent = make_agent(settings={"connection.connect_timeout": "2s"})
    proc = agent.register(token)
    assert proc.returncode == 0, proc.stderr
    device_id = proc.stdout.strip()
    gateway = FakeGateway(server, agent.state_dir, tmp_path / "gw").start()
    try:
        agent.settings["server.url"] = gateway.url
        agent.start()
        # The gateway has no link to the server: the channel counts as open anyway.
        wait_until(lambda: connection(agent).get("via_gateway") is True and
                   connection(agent).get("state") == "connected", timeout=30,
                   what=f"the agent connected to the gateway; its log:\n{agent.log()}")
        c = connection(agent)
        assert c["server_reachable"] is False and c["endpoint"] == gateway.url
        assert "the server is unavailable behind it" in agent.run("status").stdout
        assert not online(server, device_id)
        # Well past the handshake deadline (2 s) the channel is still the first one, and
        # nothing but the first hello was sent into the void.
        time.sleep(3)
        assert gateway.accepted == 1, agent.log()
        assert connection(agent)["state"] == "connected"
        assert gateway.sent_while(False) in ([], ["hello"]), gateway.from_device

        # The link comes up: the agent says hello again and carries on as on a new channel.
        gateway.set_link(True)
        wait_until(lambda: connection(agent).get("server_reachable") is True, timeout=20,
                   what=f"the server reachable through the gateway; log:\n{agent.log()}")
        wait_until(lambda: online(server, device_id), what="the device online via the gateway")
        wait_until(lambda: {"hello", "status", "inventory"} <= set(gateway.sent_while(True)),
                   what=f"hello, status and inventory through the gateway: {gateway.from_device}")
        assert gateway.sent_while(True)[0] == "hello"
        assert connection(agent)["via_gateway"] is True

        # The link goes down again: still connected to the gateway, nothing more is sent.
        gateway.set_link(False)
        wait_until(lambda: connection(agent).get("server_reachable") is False, timeout=10,
                   what="the agent to hear the server is unavailable")
        wait_until(lambda: not online(server, device_id), timeout=20,
                   what="the device offline at the server")
        assert connection(agent)["state"] == "connected"
        gateway.set_link(True)
        wait_until(lambda: connection(agent).get("server_reachable") is True, timeout=20,
                   what="the server reachable again")
        wait_until(lambda: online(server, device_id), what="the device online again")
        assert gateway.accepted == 1
        assert agent.proc.poll() is None
    finally:
        gateway.close()
