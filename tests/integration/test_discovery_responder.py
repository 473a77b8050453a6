"""The agent's discovery responder (UDP/TCP 30005) and wake_peer, in network namespaces.

A bridge namespace joins four node namespaces with veth pairs on 10.77.0.0/24:
  srv 10.77.0.1 (a fake UP server, for online keys and wake_peer)
  pr  10.77.0.2 (the prober)
  a1  10.77.0.11 (agent under test)     a2 10.77.0.12 (a second agent)
Sockets are opened inside a namespace by switching this thread into it (setns) just for the
socket() call; a socket keeps the namespace it was made in.
"""

import asyncio
import ctypes
import datetime
import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from contextlib import contextmanager

import pytest
import websockets

from agent_harness import Agent
from tether_harness import UP_SUBPROTOCOL, wait_until

PID = os.getpid()
SUBNET = "10.77.0"
NODES = {"srv": f"{SUBNET}.1", "pr": f"{SUBNET}.2", "a1": f"{SUBNET}.11", "a2": f"{SUBNET}.12"}
CLONE_NEWNET = 0x40000000
MAGIC = b"TTHD"


def ns_name(node):
    return f"td{node}{PID}"


def sh(*args, check=True):
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def in_netns(node):
    """Runs the body with this thread in the node's network namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns_name(node)}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def make_socket(node, family, kind, proto=0):
    with in_netns(node):
        return socket.socket(family, kind, proto)


@pytest.fixture(scope="module")
def lan():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces (ip netns)")
    if shutil.which("ip") is None or sh("ip", "netns", "list", check=False).returncode != 0:
        pytest.skip("`ip netns` is not available here")
    bridge = ns_name("br")
    created = []
    try:
        sh("ip", "netns", "add", bridge)
        created.append(bridge)
        sh("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", bridge, "link", "set", "br0", "up")
        macs = {}
        for i, (node, address) in enumerate(NODES.items()):
            ns = ns_name(node)
            sh("ip", "netns", "add", ns)
            created.append(ns)
            mac = f"52:54:00:77:00:{i + 1:02x}"
            sh("ip", "-n", ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer",
               "name", f"p{node}", "netns", bridge)
            sh("ip", "-n", bridge, "link", "set", f"p{node}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            macs[node] = mac
        # A second subnet between the prober and a1, for the overall rate limit.
        sh("ip", "-n", ns_name("pr"), "addr", "add", "10.78.0.2/24", "dev", "eth0")
        sh("ip", "-n", ns_name("a1"), "addr", "add", "10.78.0.11/24", "dev", "eth0")
        yield macs
    except RuntimeError as e:
        pytest.skip(f"cannot build the test network: {e}")
    finally:
        for ns in reversed(created):
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def agents(tmp_path):
    started = []

    def start(node, name=None, **settings):
        base = {"discovery.auto_register": "off", "log.level": "debug", **settings}
        agent = Agent(tmp_path / (name or node), settings=base,
                      prefix=["ip", "netns", "exec", ns_name(node)])
        agent.start()
        wait_until(lambda: (agent.status().get("discovery") or {}).get("port") is not None,
                   timeout=15, what=f"the discovery responder; log:\n{agent.log()}")
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


# --- datagram codecs (docs/protocol.md §3), written independently of the C++ ones ---------

def header(kind, nonce):
    return MAGIC + bytes([1, kind]) + b"\0\0" + struct.pack(">Q", nonce)


def scan_probe(nonce, reply_port, padding=300):
    return header(1, nonce) + struct.pack(">HH", reply_port, padding) + bytes(padding)


def online_probe(nonce, reply_port, device_id, timestamp, key=None, padding=60):
    body = header(3, nonce) + struct.pack(">H", reply_port) + device_id + struct.pack(">Q", timestamp)
    if key is None:
        body += b"\0"
    else:
        body += bytes([32])
        body += hmac.new(key, body, hashlib.sha256).digest()
    return body + struct.pack(">H", padding) + bytes(padding)


def parse_reply(data):
    assert data[:4] == MAGIC and data[4] == 1, data[:8]
    kind = data[5]
    nonce = struct.unpack(">Q", data[8:16])[0]
    out = {"type": kind, "nonce": nonce, "size": len(data)}
    if kind == 2:
        flags = data[16]
        out["registered"] = bool(flags & 1)
        out["accepts_registration"] = bool(flags & 2)
        out["mac"] = ":".join(f"{b:02x}" for b in data[17:23])
        pos = 23
        for field in ("unit_id", "hostname", "product", "version"):
            n = data[pos]
            out[field] = data[pos + 1:pos + 1 + n].decode()
            pos += 1 + n
        if out["registered"]:
            out["server_fingerprint"] = data[pos:pos + 32].hex()
            pos += 32
        assert pos == len(data)
    elif kind == 4:
        out["online"] = data[16] == 1
        out["device_id"] = data[17:49].hex()
        n = data[49]
        out["authenticator"] = data[50:50 + n]
        out["signed"] = data[:50]
    return out


class Prober:
    """A UDP socket in the prober namespace that remembers the size of every probe sent, so
    that each reply can be checked against its probe."""

    def __init__(self, port=40000, node="pr", bind="0.0.0.0"):
        self.sock = make_socket(node, socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind, port))
        self.port = port
        self.sizes = {}
        self.nonce = 1000

    def send(self, payload, target, nonce=None):
        if nonce is not None:
            self.sizes[nonce] = len(payload)
        self.sock.sendto(payload, (target, 30005))

    def probe(self, target, padding=300, reply_port=None):
        self.nonce += 1
        self.send(scan_probe(self.nonce, reply_port or self.port, padding), target, self.nonce)
        return self.nonce

    def replies(self, timeout):
        """Every reply within `timeout` seconds; each checked: no larger than its probe."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return out
            data, sender = self.sock.recvfrom(4096)
            reply = parse_reply(data)
            reply["from"] = sender
            assert reply["nonce"] in self.sizes, f"a reply to no probe of ours: {reply}"
            assert reply["size"] <= self.sizes[reply["nonce"]], \
                f"reply {reply['size']} bytes > probe {self.sizes[reply['nonce']]} bytes"
            out.append(reply)

    def reply_to(self, nonce, timeout=5):
        """Waits for the reply to `nonce` (the barrier: replies come in probe order); returns
        every reply that came before it too."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.replies(0.2):
                seen.append(r)
                if r["nonce"] == nonce:
                    return seen
        raise AssertionError(f"no reply to probe {nonce}; saw {seen}")

    def close(self):
        self.sock.close()


def counters(agent):
    return agent.status().get("discovery") or {}


def wait_counters(agent, predicate, timeout=10):
    """Waits until the agent's published counters satisfy `predicate` (the agent writes them
    at most a few times a second); returns them."""
    seen = {}

    def check():
        seen["c"] = counters(agent)
        return bool(seen["c"]) and predicate(seen["c"])
    wait_until(check, timeout=timeout, what=f"counters to match; last seen {seen.get('c')}")
    return seen["c"]


def wait_received(agent, count, timeout=10):
    wait_until(lambda: counters(agent).get("received", 0) >= count, timeout=timeout,
               what=f"the agent to count {count} datagrams; counters {counters(agent)}")


class Capture:
    """AF_PACKET capture of every frame on eth0 of a namespace."""

    def __init__(self, node):
        self.sock = make_socket(node, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.sock.bind(("eth0", 0))

    def udp(self, timeout):
        """(src ip, src port, dst ip, dst port, payload) of each UDP/IPv4 frame seen."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return out
            frame = self.sock.recv(65535)
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            ip = frame[14:14 + ihl]
            udp = frame[14 + ihl:]
            sport, dport, length = struct.unpack(">HHH", udp[:6])
            out.append((socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                        udp[8:length]))

    def close(self):
        self.sock.close()


# --- tests -------------------------------------------------------------------------------

def test_scan_reply_describes_the_device_and_fits_the_probe(lan, agents):
    agent = agents("a1")
    prober = Prober()
    try:
        nonce = prober.probe(NODES["a1"])
        replies = prober.reply_to(nonce)
        assert len(replies) == 1
        r = replies[0]
        print("scan reply:", r)
        assert r["type"] == 2 and r["from"] == (NODES["a1"], 30005)
        assert r["mac"] == lan["a1"]  # the interface the probe came in on
        assert r["product"] == "tether-agent"
        assert r["registered"] is False and r["accepts_registration"] is True
        assert r["unit_id"] == lan["a1"]
        assert r["hostname"] == socket.gethostname()[:253]
        # An unpadded probe is too small for any reply: none comes.
        prober.probe(NODES["a1"], padding=0)
        barrier = prober.probe(NODES["a1"])
        assert [x["nonce"] for x in prober.reply_to(barrier)] == [barrier]
        wait_counters(agent, lambda c: c["dropped"]["reply_too_large"] == 1)
    finally:
        prober.close()


def test_every_truncated_probe_is_dropped(lan, agents):
    agent = agents("a1")
    prober = Prober()
    try:
        full = scan_probe(7, prober.port, padding=200)
        for n in range(len(full)):
            prober.sock.sendto(full[:n], (NODES["a1"], 30005))
        # Trailing bytes after a complete datagram, and a corrupted padding byte, too.
        prober.sock.sendto(full + b"\0", (NODES["a1"], 30005))
        prober.sock.sendto(full[:-1] + b"\1", (NODES["a1"], 30005))
        sent = len(full) + 2
        wait_received(agent, sent)
        barrier = prober.probe(NODES["a1"])
        assert [r["nonce"] for r in prober.reply_to(barrier)] == [barrier]
        c = wait_counters(agent, lambda c: c["replies"]["scan"] == 1)
        print("counters:", json.dumps(c))
        assert c["dropped"]["malformed"] == sent
    finally:
        prober.close()


def test_reserved_and_own_reply_ports_get_nothing(lan, agents):
    agent = agents("a1")
    prober = Prober()
    listeners = {}
    try:
        for port in (53, 30005, 30001):
            s = make_socket("pr", socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", port))
            listeners[port] = s
            prober.probe(NODES["a1"], reply_port=port)
        barrier = prober.probe(NODES["a1"])
        assert [r["nonce"] for r in prober.reply_to(barrier)] == [barrier]
        for port, s in listeners.items():
            assert not select.select([s], [], [], 0.2)[0], f"something arrived on port {port}"
        c = wait_counters(agent, lambda c: c["replies"]["scan"] == 1)
        assert c["dropped"]["reserved_port"] == 1
        assert c["dropped"]["own_port"] == 2
    finally:
        prober.close()
        for s in listeners.values():
            s.close()


def ip_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def spoofed_udp(src, sport, dst, dport, payload):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack(">H", ip_checksum(hdr)) + hdr[12:]
    return hdr + udp


def test_a_probe_spoofed_from_another_agents_port_makes_no_loop(lan, agents):
    a1 = agents("a1")
    a2 = agents("a2", name="a2")
    capture = Capture("a1")
    raw = make_socket("pr", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        # "From a2:30005, reply to 30005": if a1 answered, a2 would answer a1, and so on.
        probe = scan_probe(99, 30005, padding=300)
        raw.sendto(spoofed_udp(NODES["a2"], 30005, NODES["a1"], 30005, probe), (NODES["a1"], 0))
        wait_received(a1, 1)
        frames = [f for f in capture.udp(1.0) if 30005 in (f[1], f[3])]
        print("frames with port 30005 seen on a1:", [(f[0], f[1], f[2], f[3], len(f[4])) for f in frames])
        assert len(frames) <= 1
        c = wait_counters(a1, lambda c: c["dropped"]["own_port"] == 1)
        assert c["replies"]["scan"] == 0
        assert counters(a2).get("received", 0) == 0
    finally:
        capture.close()
        raw.close()


def test_a_flood_is_capped_by_the_rate_limits(lan, agents):
    agent = agents("a1", **{"discovery.rate_per_source": "1", "discovery.burst_per_source": "8",
                            "discovery.rate_total": "1", "discovery.burst_total": "12"})
    one = Prober()
    two = Prober(port=40001, bind="10.78.0.2")
    try:
        start = time.monotonic()
        for _ in range(60):
            one.probe(NODES["a1"])
        wait_received(agent, 60)
        first = one.replies(0.5)
        for _ in range(60):
            two.probe("10.78.0.11")
        wait_received(agent, 120)
        second = two.replies(0.5)
        elapsed = time.monotonic() - start
        c = wait_counters(agent, lambda c: c["replies"]["scan"] == len(first) + len(second))
        print(f"flood: {len(first)} + {len(second)} replies in {elapsed:.2f}s; counters {json.dumps(c)}")
        # Per source: the burst plus what refilled meanwhile; overall: likewise.
        assert len(first) <= 8 + int(elapsed) + 1
        assert len(first) + len(second) <= 12 + int(elapsed) + 1
        assert len(second) >= 1  # the second network got its share of the total
        # Each reply comes from the address its probe was sent to.
        assert {r["from"] for r in second} == {("10.78.0.11", 30005)}
        assert {r["from"] for r in first} == {(NODES["a1"], 30005)}
        assert c["dropped"]["rate_source"] >= 60 - 8 - int(elapsed) - 1
        assert c["dropped"]["rate_total"] >= 1
        assert c["replies"]["scan"] == len(first) + len(second)
    finally:
        one.close()
        two.close()


def test_scan_over_tcp(lan, agents):
    agents("a1")
    sock = make_socket("pr", socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect((NODES["a1"], 30005))
        probe = scan_probe(4242, 0, padding=300)
        sock.sendall(struct.pack(">H", len(probe)) + probe)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = sock.recv(4096)
            assert chunk, "connection closed before the reply"
            data += chunk
        r = parse_reply(data[2:])
        print("TCP scan reply:", r)
        assert r["nonce"] == 4242 and r["size"] <= len(probe)
        assert r["mac"] == lan["a1"] and r["product"] == "tether-agent"
        assert sock.recv(10) == b""  # one request per connection
    finally:
        sock.close()


def test_tcp_connection_that_sends_nothing_is_closed(lan, agents):
    agents("a1")
    sock = make_socket("pr", socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(20)
        sock.connect((NODES["a1"], 30005))
        start = time.monotonic()
        assert sock.recv(10) == b""
        print(f"idle connection closed after {time.monotonic() - start:.1f}s")
    finally:
        sock.close()


# --- a fake UP server: online key and wake_peer ---------------------------------------------

def make_pki(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODES["srv"])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(NODES["srv"]))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = directory / "server-chain.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) +
                      ca.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    fingerprint = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()
    return chain, key_file, fingerprint


class FakeUpServer:
    """Answers hello with an online key; sends requests on demand; records results."""

    def __init__(self, tmp_path, online_key):
        self.chain, self.key, self.fingerprint = make_pki(tmp_path)
        self.online_key = online_key
        self.ws = None
        self.results = {}
        self.events = []
        self.connected = asyncio.Event()

    async def handler(self, ws, *_):
        self.ws = ws
        async for text in ws:
            msg = json.loads(text)
            if msg["type"] == "hello":
                await ws.send(json.dumps({"v": 1, "type": "result", "id": msg["id"], "body": {
                    "ok": True, "data": {"server_time": int(time.time()), "status_interval_s": 60,
                                         "online_key": self.online_key}}}))
                self.connected.set()
            elif msg["type"] == "result":
                self.results[msg["id"]] = msg["body"]
            elif msg["type"] == "event":
                self.events.append(msg["body"])

    async def start(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.chain, self.key)
        sock = make_socket("srv", socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((NODES["srv"], 8443))
        self.server = await websockets.serve(self.handler, sock=sock, ssl=ctx,
                                             subprotocols=[UP_SUBPROTOCOL])

    async def request(self, msg_id, msg_type, body, timeout=10):
        await self.ws.send(json.dumps({"v": 1, "type": msg_type, "id": msg_id, "body": body}))
        deadline = time.monotonic() + timeout
        while msg_id not in self.results:
            assert time.monotonic() < deadline, f"no result for {msg_id}"
            await asyncio.sleep(0.05)
        return self.results[msg_id]

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()


def enroll_by_hand(agent, fingerprint):
    """Makes the agent's state say it is enrolled with the fake server (the key and device id
    are the agent's own; the certificate stays self-signed: the fake server does not check)."""
    device_id = agent.device_id()
    (agent.state_dir / "enrollment.json").write_text(json.dumps({
        "server_url": f"wss://{NODES['srv']}:8443", "device_id": device_id,
        "ca_fingerprint": fingerprint, "enrolled_at": int(time.time())}))
    (agent.state_dir / "trust.json").write_text(json.dumps({"ca_fingerprints": [fingerprint]}))
    agent.proc.send_signal(signal.SIGHUP)
    return device_id


def test_online_check_and_wake_peer_with_a_server(lan, agents, tmp_path):
    online_key = os.urandom(32).hex()
    a2 = agents("a2", name="a2-unregistered")
    a1 = agents("a1", **{"connection.backoff_cap": "2s"})
    loop = asyncio.new_event_loop()
    server = FakeUpServer(tmp_path, online_key)
    prober = Prober()
    capture = Capture("pr")
    try:
        loop.run_until_complete(server.start())
        device_id = enroll_by_hand(a1, server.fingerprint)
        loop.run_until_complete(asyncio.wait_for(server.connected.wait(), 30))
        key_file = a1.state_dir / "online.key"
        wait_until(lambda: key_file.exists(), what="online.key")
        assert key_file.read_text().strip() == online_key
        assert (key_file.stat().st_mode & 0o777) == 0o600

        key = bytes.fromhex(online_key)
        dev = bytes.fromhex(device_id)

        def online(target, nonce, k, ts=None, dev_id=dev):
            prober.send(online_probe(nonce, prober.port, dev_id, ts or int(time.time()), k),
                        target, nonce)

        online(NODES["a1"], 1, bytes(32))            # forged: wrong key
        online(NODES["a1"], 2, None)                 # no authenticator
        online(NODES["a1"], 3, key, ts=int(time.time()) - 600)  # stale
        online(NODES["a2"], 4, key)                  # unregistered device: never answers
        online(NODES["a1"], 5, key)                  # good
        online(NODES["a1"], 5, key)                  # ...replayed
        seen = prober.reply_to(5)
        assert [r["nonce"] for r in seen] == [5]
        good = seen[0]
        assert good["type"] == 4 and good["online"] and good["device_id"] == device_id
        assert hmac.compare_digest(good["authenticator"],
                                   hmac.new(key, good["signed"], hashlib.sha256).digest())
        barrier = prober.probe(NODES["a1"])
        replies = prober.reply_to(barrier)
        assert [r["nonce"] for r in replies] == [barrier]  # the replay got nothing
        assert replies[0]["registered"] and replies[0]["server_fingerprint"] == server.fingerprint
        assert not replies[0]["accepts_registration"]
        c = wait_counters(a1, lambda c: c["replies"]["scan"] == 1)["dropped"]
        print("a1 drops:", json.dumps(c))
        assert c["bad_authenticator"] == 1 and c["no_authenticator"] == 1
        assert c["stale"] == 1 and c["replay"] == 1
        wait_until(lambda: counters(a2).get("dropped", {}).get("not_registered") == 1,
                   what="a2 to drop the online probe")

        # wake_peer: a magic packet for a peer, on this subnet's broadcast, ports 9 and 7.
        target = "52:54:00:99:88:77"
        result = loop.run_until_complete(server.request("s1", "wake_peer", {
            "targets": [{"mac": target, "broadcast": f"{SUBNET}.255"}]}))
        print("wake_peer result:", result)
        assert result["ok"], result
        assert result["data"]["targets"][0]["ports"] == [9, 7]
        frames = [f for f in capture.udp(1.0) if f[3] in (9, 7)]
        print("magic packets seen in pr:", [(f[0], f[2], f[3], len(f[4])) for f in frames])
        want = b"\xff" * 6 + bytes.fromhex(target.replace(":", "")) * 16
        assert sorted(f[3] for f in frames if f[4] == want and f[2] == f"{SUBNET}.255") == [7, 9]
        assert all(f[0] == NODES["a1"] for f in frames)

        refused = loop.run_until_complete(server.request("s2", "wake_peer", {
            "targets": [{"mac": target, "broadcast": "10.99.0.255"}]}))
        print("refused wake_peer:", refused)
        assert not refused["ok"] and "10.99.0.255" in refused["error"]["message"]
        assert not [f for f in capture.udp(0.5) if f[3] in (9, 7)]
    finally:
        capture.close()
        prober.close()
        loop.run_until_complete(server.stop())
        loop.close()


# --- scan-and-register and auto-registration, with the real tether-server -------------------
# The server (HTTPS enrollment) runs in srv; a stand-in for its registration listener on
# 10.77.0.1:30001 (written here, so that these tests check the device side on its own) hands
# out tokens made with `tetherctl enroll-token create`.

def register_request(nonce, fingerprint_hex, server_host="", registration_port=30001, padding=0):
    return (header(5, nonce) + struct.pack(">HH", 0, registration_port) +
            bytes.fromhex(fingerprint_hex) + bytes([len(server_host)]) + server_host.encode() +
            struct.pack(">H", padding) + bytes(padding))


def tcp_exchange(node, address, payload, timeout=10):
    sock = make_socket(node, socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, 30005))
        sock.sendall(struct.pack(">H", len(payload)) + payload)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = sock.recv(4096)
            assert chunk, "connection closed before the reply"
            data += chunk
        return data[2:]
    finally:
        sock.close()


def register(node, address, fingerprint_hex, server_host=""):
    reply = tcp_exchange(node, address, register_request(77, fingerprint_hex, server_host))
    assert reply[:4] == MAGIC and reply[5] == 6 and len(reply) == 23, reply
    return reply[16], ":".join(f"{b:02x}" for b in reply[17:23])


ACCEPTED, ALREADY, ELSEWHERE, DISABLED, BUSY = range(5)


class NsTetherServer:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir.parent / "srv.conf").write_text("# empty\n")
        self.proc = None
        self.lines = []

    def start(self):
        from tether_harness import bin_dir
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns_name("srv"), str(bin_dir() / "tether-server"),
             "--state-dir", str(self.state_dir), "-c", str(self.state_dir.parent / "srv.conf"),
             "--listen", "0.0.0.0:8443", "--registration-port", "30002",
             "--set", f"server.public_url=wss://{NODES['srv']}:8443"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: (self.state_dir / "ca.crt").exists() and self.token() is not None,
                   timeout=20, what="the server to start")
        return self

    def token(self):
        from tether_harness import bin_dir
        proc = subprocess.run(
            ["ip", "netns", "exec", ns_name("srv"), str(bin_dir() / "tetherctl"),
             "--server", "https://127.0.0.1:8443", "--token-file", str(self.state_dir / "admin.token"),
             "--ca-file", str(self.state_dir / "ca.crt"), "enroll-token", "create"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": "/nonexistent"})
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    def fingerprint(self):
        pem = (self.state_dir / "ca.crt").read_text()
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


class FakeRegistrationListener:
    """Answers token requests on 10.77.0.1:30001 with tokens from the real server."""

    def __init__(self, server, issue=True):
        self.server = server
        self.issue = issue
        self.requests = []
        self.sock = make_socket("srv", socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((NODES["srv"], 30001))
        self.sock.listen(4)
        self.stopping = False
        import threading
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            conn, peer = self.sock.accept()
            with conn:
                conn.settimeout(5)
                data = b""
                while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                body = data[2:]
                if len(body) < 16 or body[5] != 7:
                    continue
                pos = 16
                device_id = body[pos:pos + 32].hex()
                mac = ":".join(f"{b:02x}" for b in body[pos + 32:pos + 38])
                pos += 38
                n = body[pos]
                hostname = body[pos + 1:pos + 1 + n].decode()
                pos += 1 + n
                n = body[pos]
                unit_id = body[pos + 1:pos + 1 + n].decode()
                pos += 1 + n
                fingerprint = body[pos:pos + 32].hex()
                assert pos + 32 == len(body)
                self.requests.append({"peer": peer[0], "device_id": device_id, "mac": mac,
                                      "hostname": hostname, "unit_id": unit_id,
                                      "fingerprint": fingerprint})
                nonce = body[8:16]
                if self.issue:
                    token = self.server.token().encode()
                    reply = MAGIC + bytes([1, 8]) + b"\0\0" + nonce + bytes([0, len(token)]) + token
                else:
                    reply = MAGIC + bytes([1, 8]) + b"\0\0" + nonce + bytes([1])
                conn.sendall(struct.pack(">H", len(reply)) + reply)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def tether_server(lan, tmp_path):
    from tether_harness import bin_dir
    if not (bin_dir() / "tether-server").exists():
        pytest.skip("tether-server is not built")
    server = NsTetherServer(tmp_path / "server").start()
    yield server
    server.stop()


def test_scan_and_register_enrolls_an_unregistered_device(lan, agents, tether_server):
    agent = agents("a1")
    listener = FakeRegistrationListener(tether_server)
    try:
        fp = tether_server.fingerprint()
        status, mac = register("srv", NODES["a1"], fp)
        assert (status, mac) == (ACCEPTED, lan["a1"])
        wait_until(lambda: agent.status().get("enrolled"), timeout=30,
                   what=f"the agent to enroll; log:\n{agent.log()}")
        agent.wait_connected(timeout=30)
        req = listener.requests[0]
        print("token request:", req)
        assert req["peer"] == NODES["a1"] and req["device_id"] == agent.device_id()
        assert req["mac"] == lan["a1"] and req["fingerprint"] == fp
        assert req["unit_id"] == lan["a1"]
        # The real server's HelloAck carried an online key; the agent keeps it, private.
        key_file = agent.state_dir / "online.key"
        wait_until(key_file.exists, what="online.key from the server's HelloAck")
        assert len(bytes.fromhex(key_file.read_text().strip())) == 32
        assert (key_file.stat().st_mode & 0o777) == 0o600
        # Registered now: its own server is told so, another is refused.
        assert register("srv", NODES["a1"], fp)[0] == ALREADY
        assert register("srv", NODES["a1"], "ab" * 32)[0] == ELSEWHERE
        assert len(listener.requests) == 1
        # The scan reply says so too.
        reply = parse_reply(tcp_exchange("pr", NODES["a1"], scan_probe(5, 0)))
        assert reply["registered"] and reply["server_fingerprint"] == fp
    finally:
        listener.close()


def test_a_token_for_another_ca_than_requested_is_refused(lan, agents, tether_server):
    agent = agents("a1")
    listener = FakeRegistrationListener(tether_server)
    try:
        assert register("srv", NODES["a1"], "ab" * 32)[0] == ACCEPTED
        agent.wait_log("registration: the token from", timeout=20)
        assert not agent.status().get("enrolled")
        assert listener.requests[0]["fingerprint"] == "ab" * 32
        # Not stuck busy: the next request is accepted again.
        wait_until(lambda: register("srv", NODES["a1"], "cd" * 32)[0] == ACCEPTED, timeout=10,
                   what="the agent to take a new request")
    finally:
        listener.close()


def test_registration_disabled_and_refused_by_the_server(lan, agents, tether_server):
    off = agents("a2", name="a2-off", **{"discovery.accept_registration": "false"})
    assert register("srv", NODES["a2"], tether_server.fingerprint())[0] == DISABLED
    reply = parse_reply(tcp_exchange("pr", NODES["a2"], scan_probe(6, 0)))
    assert reply["accepts_registration"] is False
    off.stop()
    agent = agents("a1")
    listener = FakeRegistrationListener(tether_server, issue=False)
    try:
        assert register("srv", NODES["a1"], tether_server.fingerprint())[0] == ACCEPTED
        agent.wait_log("no token from", timeout=20)
        assert not agent.status().get("enrolled")
    finally:
        listener.close()


def test_auto_registration_with_a_configured_server(lan, agents, tether_server):
    listener = FakeRegistrationListener(tether_server)
    try:
        agent = agents("a1", **{"discovery.auto_register": "on",
                                "discovery.registration_server": NODES["srv"]})
        wait_until(lambda: agent.status().get("enrolled"), timeout=30,
                   what=f"the agent to auto-register; log:\n{agent.log()}")
        agent.wait_connected(timeout=30)
        assert listener.requests[0]["fingerprint"] == "00" * 32
    finally:
        listener.close()


def test_auto_registration_finds_tether_server_by_dns(lan, agents, tether_server):
    # `ip netns exec` puts /etc/netns/NAME/hosts over /etc/hosts for the agent it runs.
    etc = f"/etc/netns/{ns_name('a1')}"
    os.makedirs(etc, exist_ok=True)
    listener = FakeRegistrationListener(tether_server)
    try:
        with open(f"{etc}/hosts", "w") as f:
            f.write(f"127.0.0.1 localhost\n{NODES['srv']} tether-server\n")
        agent = agents("a1", **{"discovery.auto_register": "dns"})
        wait_until(lambda: agent.status().get("enrolled"), timeout=30,
                   what=f"the agent to auto-register by DNS; log:\n{agent.log()}")
        assert "tether-server is 10.77.0.1" in agent.log()
        assert listener.requests[0]["fingerprint"] == "00" * 32
        agent.wait_connected(timeout=30)
    finally:
        listener.close()
        shutil.rmtree(etc, ignore_errors=True)
