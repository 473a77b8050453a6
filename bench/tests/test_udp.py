"""bench/udp: the prober's own checks (--self-test: percentiles, probe and reply codecs, a short
paced run against a responder of its own that drops every tenth probe), its probes checked
byte for byte against an independent encoder (docs/protocol.md §3.4), its refusal of bad
arguments, and the driver's parsing and loss arithmetic. No agent, no server."""

import hashlib
import hmac
import json
import struct
import subprocess

import pytest

from benchtest import load_driver, program

udp = load_driver("udp")


def prober():
    return str(program("tether-bench-udp"))


def online_probe(nonce, reply_port, device_id, timestamp, key):
    """§3.4, written from the spec (not from the C++ codec)."""
    body = (b"TTHD" + bytes([1, 3]) + b"\0\0" + struct.pack(">Q", nonce) +
            struct.pack(">H", reply_port) + device_id + struct.pack(">Q", timestamp) + bytes([32]))
    return body + hmac.new(key, body, hashlib.sha256).digest() + struct.pack(">H", 0)


def test_prober_self_test_passes():
    proc = subprocess.run([prober(), "--self-test"], capture_output=True, text=True, timeout=60)
    print(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert "self-test: ok" in proc.stderr


def test_probes_match_an_independent_encoder():
    key = bytes(range(32))
    device = hashlib.sha256(b"device").digest()
    for nonce, ts in ((1, 1700000000), (2 ** 63 + 5, 1800000123)):
        proc = subprocess.run([prober(), "--dump-probe", "--nonce", str(nonce), "--timestamp",
                               str(ts), "--device-id", device.hex(), "--key", key.hex()],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == online_probe(nonce, 40000, device, ts, key).hex()


@pytest.mark.parametrize("args", [
    [],
    ["--target", "127.0.0.1:9", "--rate", "10", "--seconds", "1"],  # online without a key
    ["--target", "127.0.0.1", "--rate", "10", "--seconds", "1", "--kind", "scan"],
    ["--target", "127.0.0.1:9", "--rate", "fast", "--kind", "scan"],
    ["--target", "127.0.0.1:9", "--kind", "ping"],
    ["--target", "127.0.0.1:9", "--key", "abcd"],
    ["--bogus", "1"],
])
def test_prober_refuses_bad_arguments(args):
    proc = subprocess.run([prober(), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)


def test_a_run_without_a_responder_loses_everything():
    proc = subprocess.run([prober(), "--target", "127.0.0.1:9", "--rate", "200", "--seconds",
                           "0.1", "--kind", "scan", "--padding", "300", "--drain-ms", "100"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = udp.parse_prober_output(proc.stdout)
    assert out["sent"] == 20 and out["replies"] == 0 and out["lost"] == 20
    assert out["latency_us"]["p99"] is None


def test_driver_parses_prober_output_and_splits_loss():
    line = json.dumps({"sent": 5000, "replies": 4000, "lost": 1000, "send_errors": 0,
                       "achieved_rate": 999.0, "latency_us": {"p50": 50, "p99": 300}})
    out = udp.parse_prober_output("noise\n" + line + "\n")
    assert out["replies"] == 4000
    with pytest.raises(ValueError):
        udp.parse_prober_output("")
    with pytest.raises(ValueError):
        udp.parse_prober_output('{"sent": 1}')
    before = {"received": 10, "replies": {"online": 10, "scan": 0},
              "dropped": {"replay": 0, "rate_total": 2}}
    after = {"received": 4960, "replies": {"online": 4010, "scan": 0},
             "dropped": {"replay": 904, "rate_total": 2}}
    delta = udp.counter_delta(before, after)
    assert delta["received"] == 4950 and delta["replay"] == 904 and delta["rate_total"] == 0
    assert delta["replies_online"] == 4000
    # 1000 unanswered: 904 refused on purpose, 96 lost (50 never reached the agent).
    assert udp.split_loss(out, delta) == (904, 96)
