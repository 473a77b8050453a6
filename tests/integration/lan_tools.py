"""Small LAN helpers for the discovery tests, run inside network namespaces.

    python3 lan_tools.py respond KEYHEX|forge  -- answers online probes on UDP 30005 (docs/
        protocol.md §3.4) with an authenticator made with KEYHEX, or with a wrong one
    python3 lan_tools.py capture IFACE SECONDS -- prints, one JSON line each, the UDP
        datagrams to port 9 or 7 seen on IFACE (raw AF_PACKET capture)
    python3 lan_tools.py token HOST PORT FPHEX|zero MAC -- one token request (§3.5) to the
        server's registration port; prints the reply as JSON
"""

import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

MAGIC = b"TTHD"
ONLINE_PROBE, ONLINE_REPLY = 3, 4


def online_reply(nonce, device_id, key):
    head = MAGIC + bytes([1, ONLINE_REPLY]) + struct.pack(">HQ", 0, nonce)
    signed = head + bytes([1]) + device_id + bytes([32])
    if key is None:
        auth = os.urandom(32)  # forged: nobody without the key can make a valid one
    else:
        auth = hmac.new(key, signed, hashlib.sha256).digest()
    return signed + auth


def respond(key_hex):
    key = None if key_hex == "forge" else bytes.fromhex(key_hex)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 30005))
    print("ready", flush=True)
    while True:
        data, (host, _port) = s.recvfrom(2048)
        if len(data) < 59 or data[:4] != MAGIC or data[5] != ONLINE_PROBE:
            continue
        nonce = struct.unpack(">Q", data[8:16])[0]
        reply_port = struct.unpack(">H", data[16:18])[0]
        device_id = data[18:50]
        reply = online_reply(nonce, device_id, key)
        assert len(reply) <= len(data)
        s.sendto(reply, (host, reply_port))
        print(json.dumps({"answered": host, "probe": len(data), "reply": len(reply)}),
              flush=True)


def capture(iface, seconds):
    ETH_P_ALL = 0x0003
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(0.2)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING or len(frame) < 42:
            continue
        if struct.unpack(">H", frame[12:14])[0] != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        src = socket.inet_ntoa(ip[12:16])
        dst = socket.inet_ntoa(ip[16:20])
        udp = ip[ihl:]
        sport, dport, length = struct.unpack(">HHH", udp[:6])
        if dport not in (9, 7):
            continue
        payload = udp[8:length]
        print(json.dumps({"src": src, "dst": dst, "sport": sport, "dport": dport,
                          "payload": payload.hex()}), flush=True)


def token(host, port, fingerprint, mac):
    fp = bytes(32) if fingerprint == "zero" else bytes.fromhex(fingerprint)
    nonce = int.from_bytes(os.urandom(8), "big")
    body = (MAGIC + bytes([1, 7]) + struct.pack(">HQ", 0, nonce) + os.urandom(32) +
            bytes.fromhex(mac.replace(":", "")) + bytes([7]) + b"tl-test" + bytes([0]) + fp)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">H", len(body)) + body)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    length = struct.unpack(">H", data[:2])[0]
    reply = data[2:2 + length]
    assert reply[:4] == MAGIC and reply[5] == 8, reply
    assert struct.unpack(">Q", reply[8:16])[0] == nonce
    status = reply[16]
    tok = reply[18:18 + reply[17]].decode() if status == 0 else None
    print(json.dumps({"status": status, "token": tok}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "respond":
        respond(sys.argv[2])
    elif sys.argv[1] == "capture":
        capture(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "token":
        token(*sys.argv[2:6])
    else:
        sys.exit("usage: lan_tools.py respond KEYHEX|forge | capture IFACE SECONDS")
