"""Bad input on the UP channel (issue 11): every malformed message gets a structured error
result (docs/protocol.md §2.1, §2.3), the channel stays up, the server's memory stays bounded.

Each case prints what was sent and what came back, and the server's VmRSS/VmHWM where memory
is the point.
"""

import asyncio
import json
import time

import websockets

import ws_frames
from tether_harness import DeviceKey, hello_message, recv_json, send_json, up_connect, wait_until

UP_LIMIT = 256 * 1024
MIB = 1024 * 1024
ERROR_CODES = {"syntax", "unknown_type", "missing_field", "wrong_type", "bad_value", "too_large",
               "too_deep", "duplicate_key", "bad_version", "invalid_argument"}


def enrolled(server, tmp_path, name="device"):
    device = DeviceKey(tmp_path, name)
    status, _, body = device.enroll(server, server.create_token()["token"], hostname=name)
    assert status == 201, body
    return device


def memory_kib(pid):
    """VmRSS and VmHWM of a process, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


async def greet(server, device):
    ws = await up_connect(server, device)
    await send_json(ws, hello_message(device.device_id, "d1", hostname=device.key.stem))
    ack = await recv_json(ws)
    trust = await recv_json(ws)
    assert ack["body"]["ok"] is True and trust["type"] == "trust_update"
    await send_json(ws, {"v": 1, "type": "result", "id": trust["id"], "body": {"ok": True}})
    return ws


async def still_works(ws, tag):
    """The channel still answers: a WebSocket ping and a message (its error result names
    the same id, so it is this message's answer and nothing left over)."""
    started = time.monotonic()
    pong = await ws.ping(tag.encode())
    await asyncio.wait_for(pong, 10)
    await send_json(ws, {"v": 1, "type": "frobnicate", "id": tag, "body": {}})
    reply = await recv_json(ws)
    assert reply["id"] == tag and reply["body"]["error"]["code"] == "unknown_type", reply
    return time.monotonic() - started


def status_body(**override):
    body = {"uptime_s": 42, "load1": 0.5, "mem_total_kb": 2048000, "mem_available_kb": 1024000,
            "shadow_sessions": 0}
    body.update(override)
    return body


def raw_status(**fields):
    """A status message with fields written as raw JSON text (numbers JSON cannot hold as
    Python values, duplicate keys)."""
    body = json.dumps(status_body())[1:-1]
    extra = "".join(f', "{k}": {v}' for k, v in fields.items())
    return '{"v": 1, "type": "status", "id": "%s", "body": {' + body + extra + "}}"


# (name, text, the codes acceptable as its answer, whether the answer carries the id)
def bad_messages():
    deep = 100_000
    cases = [
        ("unknown type", json.dumps({"v": 1, "type": "frobnicate", "id": "c1", "body": {}}),
         {"unknown_type"}, "c1"),
        ("type not a string", json.dumps({"v": 1, "type": 7, "id": "c2", "body": {}}),
         {"wrong_type"}, "c2"),
        ("v a string", json.dumps({"v": "1", "type": "status", "id": "c3", "body": {}}),
         {"wrong_type"}, "c3"),
        ("body an array", json.dumps({"v": 1, "type": "status", "id": "c4", "body": []}),
         {"wrong_type"}, "c4"),
        ("field wrong type",
         json.dumps({"v": 1, "type": "status", "id": "c5", "body": status_body(uptime_s="x")}),
         {"wrong_type"}, "c5"),
        ("id a number", json.dumps({"v": 1, "type": "status", "id": 5, "body": status_body()}),
         {"wrong_type"}, "0"),
        ("not an object", "[1, 2, 3]", {"wrong_type", "syntax"}, "0"),
        ("duplicate key at top",
         '{"v": 1, "v": 1, "type": "status", "id": "c6", "body": {}}', {"duplicate_key"}, "0"),
        ("duplicate key in body", raw_status(uptime_s=1) % "c7", {"duplicate_key"}, "0"),
        (f"{deep}-deep arrays", "[" * deep + "]" * deep, {"too_deep"}, "0"),
        (f"{deep}-deep arrays in body",
         '{"v": 1, "type": "status", "id": "c8", "body": {"a": ' + "[" * deep + "]" * deep
         + "}}", {"too_deep"}, "0"),
        ("9-deep objects in body (one over the limit)",
         '{"v": 1, "type": "status", "id": "c8", "body": ' + '{"a":' * 8 + "1" + "}" * 8
         + "}", {"too_deep"}, "0"),
        ("1e400", raw_status(load5="1e400") % "c9", {"bad_value"}, "0"),
        ("-1e400 where an integer is expected",
         raw_status().replace('"uptime_s": 42', '"uptime_s": -1e400') % "c10", {"bad_value"},
         "0"),
        ("2^64+1 where an integer is expected",
         raw_status().replace('"uptime_s": 42', '"uptime_s": 18446744073709551617') % "c11",
         {"wrong_type", "bad_value"}, "c11"),
        ("2^63 where an integer is expected",
         raw_status().replace('"uptime_s": 42', '"uptime_s": 9223372036854775808') % "c12",
         {"bad_value"}, "c12"),
        ("a 40-digit integer",
         raw_status().replace('"uptime_s": 42', '"uptime_s": ' + "9" * 40) % "c13",
         {"wrong_type", "bad_value"}, "c13"),
        ("-0 as the version", raw_status().replace('"v": 1', '"v": -0') % "c14",
         {"bad_version"}, "c14"),
        ("-0.0 as the version", raw_status().replace('"v": 1', '"v": -0.0') % "c15",
         {"wrong_type", "bad_version"}, "c15"),
        ("1.5 where an integer is expected",
         raw_status().replace('"uptime_s": 42', '"uptime_s": 1.5') % "c16", {"wrong_type"}, "c16"),
        ("a 400-digit number", raw_status(load5="1" + "0" * 400) % "c17", {"bad_value"}, "0"),
        ("string of 16 KiB + 1",
         json.dumps({"v": 1, "type": "event", "id": "c18", "body": {
             "kind": "x", "severity": "info", "message": "m" * (16 * 1024 + 1), "time": 1}}),
         {"too_large"}, "0"),
        ("invalid JSON", "{not json", {"syntax"}, "0"),
        ("empty message", "", {"syntax"}, "0"),
        ("a NUL in a token",
         json.dumps({"v": 1, "type": "event", "id": "c19", "body": {
             "kind": "x\u0000y", "severity": "info", "message": "m", "time": 1}}),
         {"bad_value"}, "c19"),
        ("exactly at the size limit (a valid envelope padded with spaces)",
         None, {"unknown_type"}, "c20"),
    ]
    padded = json.dumps({"v": 1, "type": "frobnicate", "id": "c20", "body": {}})
    cases[-1] = (cases[-1][0], padded + " " * (UP_LIMIT - len(padded)), cases[-1][2], cases[-1][3])
    return cases


def test_bad_messages_get_structured_errors_and_the_channel_stays_up(server, tmp_path):
    device = enrolled(server, tmp_path)
    pid = server.proc.pid

    async def run():
        ws = await greet(server, device)
        rss0, hwm0 = memory_kib(pid)
        worst = 0.0
        for i, (name, text, codes, reply_id) in enumerate(bad_messages()):
            started = time.monotonic()
            await ws.send(text)
            reply = await recv_json(ws)
            took = time.monotonic() - started
            body = reply["body"]
            print(f"{name} ({len(text)} bytes): {reply['id']} "
                  f"{body.get('error', {}).get('code')} {body.get('error', {}).get('message', '')[:80]!r}"
                  f" in {took * 1000:.1f} ms")
            assert reply["type"] == "result" and body["ok"] is False, (name, reply)
            assert body["error"]["code"] in codes, (name, reply)
            assert body["error"]["code"] in ERROR_CODES
            assert reply["id"] == reply_id, (name, reply)
            worst = max(worst, await still_works(ws, f"ok{i}"))
        rss1, hwm1 = memory_kib(pid)
        print(f"server VmRSS {rss0} -> {rss1} KiB, VmHWM {hwm0} -> {hwm1} KiB; "
              f"slowest ping+message after a bad one: {worst * 1000:.1f} ms")
        assert hwm1 - hwm0 < 64 * 1024
        # A valid status report is still taken.
        await send_json(ws, {"v": 1, "type": "status", "id": "d9", "body": status_body(uptime_s=77)})
        shown = wait_until(lambda: (server.admin("GET", f"/api/v1/devices/{device.device_id}")[2]
                                    .get("status") or {}).get("uptime_s") == 77,
                           what="the status report")
        assert shown
        await ws.close()

    asyncio.run(run())


def raw_greet(server, device):
    """A hand-written client (ws_frames) past hello and trust_update."""
    ws = ws_frames.upgrade(server.port, server.ssl_context(device.cert, device.key), "/up",
                           "tether.up.v1")
    ws.send_frame(ws_frames.OP_TEXT, json.dumps(hello_message(device.device_id, "d1")).encode())
    ack = json.loads(ws.recv_message()[1])
    trust = json.loads(ws.recv_message()[1])
    assert ack["body"]["ok"] is True and trust["type"] == "trust_update"
    ws.send_frame(ws_frames.OP_TEXT, json.dumps(
        {"v": 1, "type": "result", "id": trust["id"], "body": {"ok": True}}).encode())
    return ws


def raw_reply(ws, timeout=60):
    return json.loads(ws.recv_message(timeout)[1])


def raw_still_works(ws, tag):
    rtt = ws.ping_roundtrip(tag.encode())
    ws.send_frame(ws_frames.OP_TEXT, json.dumps(
        {"v": 1, "type": "frobnicate", "id": tag, "body": {}}).encode())
    reply = raw_reply(ws)
    assert reply["id"] == tag and reply["body"]["error"]["code"] == "unknown_type", reply
    return rtt


def test_a_100_mib_message_is_discarded_as_it_arrives(server, tmp_path):
    """Over the 256 KiB limit: dropped piece by piece (server/HttpsServer.cpp, on_up
    LWS_CALLBACK_RECEIVE, rx_discarding), answered too_large with id "0", channel kept.
    Streamed by hand (a zero mask key leaves the bytes as they are), so that the test does
    not spend its time masking 100 MiB in Python."""
    device = enrolled(server, tmp_path)
    pid = server.proc.pid
    total = 100 * MIB
    ws = raw_greet(server, device)
    try:
        rss0, hwm0 = memory_kib(pid)
        head = b'{"v": 1, "type": "event", "id": "big", "body": {"message": "'
        tail = b'"}}'
        ws.send(ws_frames.frame(ws_frames.OP_TEXT, length=total, key=b"\0\0\0\0"))
        started = time.monotonic()
        ws.send(head)
        chunk = b"x" * MIB
        left = total - len(head) - len(tail)
        while left > 0:
            ws.send(chunk[:left])
            left -= min(left, len(chunk))
        ws.send(tail)
        reply = raw_reply(ws)
        took = time.monotonic() - started
        rss1, hwm1 = memory_kib(pid)
        print(f"100 MiB message answered {reply['id']} {reply['body']['error']} after "
              f"{took:.2f} s ({total / MIB / took:.0f} MiB/s); server VmRSS {rss0} -> {rss1} "
              f"KiB, VmHWM {hwm0} -> {hwm1} KiB")
        assert reply["type"] == "result" and reply["body"]["ok"] is False
        assert reply["body"]["error"]["code"] == "too_large" and reply["id"] == "0"
        assert hwm1 - hwm0 < 64 * 1024, "the server held the message"
        print(f"ping+message afterwards: {raw_still_works(ws, 'after-big') * 1000:.1f} ms")
        # The same in 1 MiB fragments, and one just over the limit.
        for i in range(8):
            ws.send_frame(ws_frames.OP_TEXT if i == 0 else ws_frames.OP_CONT, chunk, fin=i == 7,
                          key=b"\0\0\0\0")
        reply = raw_reply(ws)
        assert reply["body"]["error"]["code"] == "too_large" and reply["id"] == "0"
        ws.send_frame(ws_frames.OP_TEXT, b"y" * (UP_LIMIT + 1))
        reply = raw_reply(ws)
        assert reply["body"]["error"]["code"] == "too_large"
        raw_still_works(ws, "after-fragments")
        rss2, hwm2 = memory_kib(pid)
        print(f"after 8 MiB in fragments and 256 KiB + 1: VmRSS {rss2} KiB, VmHWM {hwm2} KiB")
        assert hwm2 - hwm0 < 64 * 1024
    finally:
        ws.close()


def test_invalid_utf8_fails_the_connection_with_1007(server, tmp_path):
    """RFC 6455 §8.1: lws checks text frames (LWS_SERVER_OPTION_VALIDATE_UTF8, set in
    HttpsServer::start) and closes with 1007."""
    device = enrolled(server, tmp_path)
    ctx = server.ssl_context(device.cert, device.key)
    ws = ws_frames.upgrade(server.port, ctx, "/up", "tether.up.v1")
    try:
        ws.send_frame(ws_frames.OP_TEXT, b'{"v": 1, "type": "x\xff\xfe", "id": "u1", "body": {}}')
        code, reason = ws.expect_close()
        print(f"invalid UTF-8 in a UP text message: close {code} {reason!r}")
        assert code == 1007
    finally:
        ws.close()

    async def after():
        # The device can come back at once.
        fresh = await greet(server, device)
        await still_works(fresh, "after-1007")
        await fresh.close()

    asyncio.run(after())


def test_a_websockets_peer_with_a_small_limit_is_not_sent_more(server, tmp_path):
    """The errors themselves are small: a peer that accepts only 1 KiB messages still gets
    every error result (none echoes the offending input)."""
    device = enrolled(server, tmp_path)

    async def run():
        ctx = server.ssl_context(device.cert, device.key)
        ws = await websockets.connect(f"wss://127.0.0.1:{server.port}/up", ssl=ctx,
                                      subprotocols=["tether.up.v1"], max_size=1024,
                                      ping_interval=None)
        await send_json(ws, hello_message(device.device_id, "d1"))
        # hello's answer and trust_update are larger than 1 KiB: read them with the limit off.
        ws.max_size = None
        await recv_json(ws)
        await recv_json(ws)
        ws.max_size = 1024
        longest = 0
        for name, text, _, _ in bad_messages():
            await ws.send(text)
            reply = await ws.recv()
            longest = max(longest, len(reply))
        print(f"longest error result: {longest} bytes")
        assert longest <= 1024
        await ws.close()

    asyncio.run(run())
