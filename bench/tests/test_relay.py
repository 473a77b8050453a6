"""bench/relay: the pump's own checks (--self-test: sizes, arguments, endpoints, WebSocket
framing and masking, the payload pattern), its refusal of bad arguments, whole pump runs
through no relay and through a small WebSocket-to-TCP relay written here (TLS, a faithful and
a lossy variant: the close accounting must see the loss), and the driver's arithmetic (the
summary of the pump's lines, the rows and the lost-bytes verdict). No tether-server, no
websockify, no socat; a few seconds."""

import asyncio
import subprocess
import time

import pytest

from benchtest import load_driver, program  # first: it puts bench/ on sys.path
import report  # noqa: E402

relay = load_driver("relay")


def pump():
    return program("tether-bench-relay")


def test_pump_self_test_passes():
    proc = subprocess.run([str(pump()), "--self-test"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "self-test ok" in proc.stdout


@pytest.mark.parametrize("args", [
    [],
    ["fly"],
    ["run", "--bytes"],
    ["run", "--bytes", "1.5G"],
    ["run", "--rtt", "-3"],
    ["run", "--cert", "a.crt"],
    ["run", "--timeout", "0"],
    ["run", "--bogus", "1"],
])
def test_pump_refuses_bad_arguments(args):
    proc = subprocess.run([str(pump()), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)


def run_pump(run):
    pump()  # the pump the run starts: fails here, clearly, when it is not built
    return asyncio.run(run.run(timeout=60))


def test_a_direct_run_moves_every_byte_and_loses_none():
    cfg = {"bytes": 8 << 20, "rtt": 50, "closes": 6, "close_bytes": 300001}
    port = {}

    async def start(listen_port):
        port["p"] = listen_port

    async def pair(need):
        assert need["need"] in ("stream", "close")
        return {"device": "listen", "viewer": f"tcp://127.0.0.1:{port['p']}"}

    run = relay.PumpRun("direct", relay.args(cfg), pair, start_relay=start)
    f = run_pump(run)
    assert f["throughput_d2v"] > 0 and f["throughput_v2d"] > 0
    assert f["rtt_samples"] == 50 and 0 < f["rtt_p50"] <= f["rtt_p99"]
    assert f["closes"] == 6 and f["lost_bytes"] == 0 and f["unfinished_closes"] == 0
    assert f["changed_closes"] == 0
    directions = [m["direction"] for m in run.messages if "close" in m]
    assert directions == ["d2v", "v2d"] * 3
    assert all(m["seen"] == "eof" for m in run.messages if "close" in m)


def make_cert(tmp_path):
    cert, key = tmp_path / "relay.crt", tmp_path / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    return cert, key


async def mini_relay(cert, key, target_port, lossy):
    """A TLS WebSocket server that relays each client to the pump's TCP listener, like
    websockify; `lossy` drops the last piece it holds in each direction when a side closes
    (which is how a relay that closes without flushing loses data)."""
    import ssl

    import websockets

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))

    async def handler(ws, _path=None):
        reader, writer = await asyncio.open_connection("127.0.0.1", target_port)

        async def to_target():
            held = None
            try:
                async for message in ws:
                    if lossy:
                        held, message = message, held
                    if message:
                        writer.write(message)
                        await writer.drain()
            finally:
                writer.close()

        async def to_client():
            held = None
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if lossy:
                    held, data = data, held
                if data:
                    await ws.send(data)
            await ws.close()

        await asyncio.gather(to_target(), to_client(), return_exceptions=True)

    return await websockets.serve(handler, "127.0.0.1", 0, ssl=ctx, max_size=None,
                                  ping_interval=None)


def relay_run(tmp_path, lossy, ca_file=None, stream=None, extra=()):
    cert, key = make_cert(tmp_path)
    cfg = {"bytes": 4 << 20, "rtt": 20, "closes": 6, "close_bytes": 1 << 20}
    if stream is None:
        stream = not lossy  # a relay that holds back its last piece never finishes a stream
    if not stream:
        cfg.update(bytes=0, rtt=0)
    state = {}

    async def start(listen_port):
        state["server"] = await mini_relay(cert, key, listen_port, lossy)
        state["port"] = state["server"].sockets[0].getsockname()[1]

    async def pair(_need):
        return {"device": "listen", "viewer": f"wss://127.0.0.1:{state['port']}/"}

    run = relay.PumpRun("mini", relay.args(cfg, "--ca-file", ca_file or cert, *extra), pair,
                        start_relay=start)

    async def go():
        try:
            return await run.run(timeout=60)
        finally:
            if "server" in state:
                state["server"].close()

    pump()
    return asyncio.run(go()), run


def test_a_faithful_websocket_relay_loses_nothing(tmp_path):
    f, run = relay_run(tmp_path, lossy=False)
    assert f["throughput_d2v"] > 0 and f["throughput_v2d"] > 0 and f["rtt_samples"] == 20
    assert f["closes"] == 6 and f["lost_bytes"] == 0 and f["lossy_closes"] == 0, run.messages
    seen = {m["direction"]: m["seen"] for m in run.messages if "close" in m}
    assert seen == {"d2v": "close", "v2d": "eof"}  # a close frame, a TCP FIN


def test_a_lossy_relay_is_caught(tmp_path):
    f, run = relay_run(tmp_path, lossy=True)
    # The mini relay holds back one piece per direction: lost at every close.
    assert f["closes"] == 6 and f["lossy_closes"] == 6 and f["lost_bytes"] > 0, run.messages


def test_a_relay_that_stops_forwarding_is_reported_as_stalled_quickly(tmp_path):
    # The lossy relay holds its last piece of the stream: the far end never gets all bytes.
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"stalled \(nothing received for 1 s\) after \d+ bytes"):
        relay_run(tmp_path, lossy=True, stream=True, extra=("--stall", "1"))
    print(f"stall reported after {time.monotonic() - t0:.1f} s (phase timeout 300 s)")


def test_a_relay_with_an_untrusted_certificate_is_refused(tmp_path):
    (tmp_path / "other").mkdir()
    other, _ = make_cert(tmp_path / "other")
    with pytest.raises(RuntimeError, match="TLS handshake"):
        relay_run(tmp_path, lossy=False, ca_file=other)


# ---- the driver's arithmetic -------------------------------------------------------------------

def lines(lost=0, seen="close", intact=True):
    return [
        {"done": "d2v", "bytes": 1 << 30, "seconds": 2.0, "pump_cpu": 1.0},
        {"done": "v2d", "bytes": 1 << 30, "seconds": 4.0, "pump_cpu": 1.0},
        {"done": "rtt", "samples_us": list(range(1, 101)), "size": 64},
        {"close": 0, "direction": "d2v", "sent": 1000, "received": 1000, "seen": "close",
         "intact": True},
        {"close": 1, "direction": "v2d", "sent": 1000, "received": 1000 - lost, "seen": seen,
         "intact": intact},
    ]


def test_summary_of_a_run():
    f = relay.summarize(lines(), {"d2v": 1.0, "v2d": 3.0}, 10240)
    assert f["throughput_d2v"] == 512.0 and f["throughput_v2d"] == 256.0
    assert f["cpu_s_per_gib"] == 2.0  # 4 s of relay CPU for 2 GiB
    assert f["pump_cpu_percent"] == pytest.approx(100 * 2 / 6)
    assert f["peak_rss_mib"] == 10.0
    samples = list(range(1, 101))
    assert f["rtt_p50"] == relay.benchlib.percentile(samples, 50) == 50
    assert f["rtt_p99"] == relay.benchlib.percentile(samples, 99) and f["rtt_samples"] == 100
    assert f["closes"] == 2 and f["lost_bytes"] == 0 and f["lossy_closes"] == 0


def test_summary_counts_losses_and_unfinished_closes():
    f = relay.summarize(lines(lost=17, seen="timeout", intact=False))
    assert f["lost_bytes"] == 17 and f["lossy_closes"] == 1
    assert f["unfinished_closes"] == 1 and f["changed_closes"] == 1
    assert f["cpu_s_per_gib"] is None and f["peak_rss_mib"] is None


@pytest.mark.parametrize("bad", [
    [{"error": "device end: upgrade refused"}],
    [{"done": "d2v", "bytes": 10, "seconds": 0}],
    [{"done": "rtt", "samples_us": []}],
])
def test_summary_refuses_broken_runs(bad):
    with pytest.raises(ValueError):
        relay.summarize(bad)


def rows_for(tether_lost):
    figures = {
        "tether": relay.summarize(lines(lost=tether_lost), {"d2v": 1, "v2d": 1}, 20480),
        "websockify": relay.summarize(lines(lost=5), {"d2v": 5, "v2d": 5}, 30720),
        "socat": relay.summarize(lines(), {"d2v": 0.5, "v2d": 0.5}, 2048),
        "direct": {"rtt_p50": 10.0, "rtt_p99": 20.0},
    }
    result = relay.benchlib.BenchResult("relay")
    relay.add_rows(result, figures, {"closes": 2, "close_bytes": 1000})
    report.render_table([result.to_json()])  # validates the shape
    return {(r["figure"], (r["goal"] or {}).get("text")): r for r in result.rows}


def test_rows_and_verdicts():
    rows = rows_for(tether_lost=0)
    d2v = rows[("throughput device→viewer", "≥ 1.5× websockify")]
    assert d2v["values"] == {"tether": 512.0, "websockify": 512.0, "socat": 512.0}
    assert report.verdict(d2v) == (1.0, False)
    assert report.verdict(rows[("throughput viewer→device", "≥ 0.5× socat")]) == (1.0, True)
    added = rows[("p99 added latency (RTT p99 − direct TCP p99)", "≤ 2× socat")]
    p99 = relay.benchlib.percentile(list(range(1, 101)), 99)
    assert added["values"] == {"tether": p99 - 20.0, "websockify": p99 - 20.0,
                               "socat": p99 - 20.0}
    assert rows[("64-byte echo RTT p99", None)]["values"]["direct TCP"] == 20.0
    lost = [r for k, r in rows.items() if k[0].startswith("bytes lost")][0]
    assert lost["values"] == {"tether": 0, "websockify": 5, "socat": 0} and lost["met"] is True
    assert report.verdict(lost)[1] is True


def test_a_lost_byte_misses_the_goal():
    rows = rows_for(tether_lost=1)
    lost = [r for k, r in rows.items() if k[0].startswith("bytes lost")][0]
    assert lost["met"] is False and report.verdict(lost)[1] is False
