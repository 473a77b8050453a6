"""The RFB client of the first-frame and session benches (bench/session/tether-bench-rfb):
its own parser self-test, its JSON lines against a scripted server on a socketpair, and the
Python side that reads them (bench/session/rfb_bench.py) and turns figures into rows."""

import socket
import struct
import sys
import threading

import pytest

from benchtest import BENCH, load_driver, program

sys.path.insert(0, str(BENCH / "session"))
import benchlib  # noqa: E402
import rfb_bench  # noqa: E402


def client():
    return program("tether-bench-rfb")


def test_client_self_test():
    import subprocess
    proc = subprocess.run([str(client()), "--self-test"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert rfb_bench.parse_event(proc.stdout)["ok"] is True


def test_usage_errors():
    import subprocess
    for args in ([], ["--connect", "127.0.0.1:1", "--encoding", "hextile"],
                 ["--fd", "3", "--connect", "127.0.0.1:1"], ["--fd", "3", "--quality", "10"]):
        proc = subprocess.run([str(client()), *args], capture_output=True, text=True, timeout=10)
        assert proc.returncode == 2, (args, proc.stdout)


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def raw_update(rects):
    """A FramebufferUpdate of Raw rectangles (x, y, w, h), 32 bpp."""
    out = struct.pack(">BxH", 0, len(rects))
    for x, y, w, h in rects:
        out += struct.pack(">HHHHi", x, y, w, h, 0) + b"\x00" * (w * h * 4)
    return out


class ScriptedServer(threading.Thread):
    """RFB 3.8, security None, a 16x8 screen; sends `updates` one per client request."""

    def __init__(self, sock, updates):
        super().__init__(daemon=True)
        self.sock = sock
        self.updates = list(updates)
        self.requests = []
        self.encodings = []
        self.error = None

    def run(self):
        try:
            s = self.sock
            s.sendall(b"RFB 003.008\n")
            assert read_exact(s, 12) == b"RFB 003.008\n"
            s.sendall(bytes([1, 1]))
            assert read_exact(s, 1) == b"\x01"
            s.sendall(struct.pack(">I", 0))
            assert read_exact(s, 1) == b"\x01"  # shared
            fmt = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
            s.sendall(struct.pack(">HH", 16, 8) + fmt + struct.pack(">I", 4) + b"fake")
            assert read_exact(s, 1) == b"\x00"  # SetPixelFormat
            assert read_exact(s, 19)[3:5] == bytes([32, 24])
            assert read_exact(s, 1) == b"\x02"  # SetEncodings
            (count,) = struct.unpack(">xH", read_exact(s, 3))
            self.encodings = list(struct.unpack(f">{count}i", read_exact(s, 4 * count)))
            while True:
                kind = read_exact(s, 1)
                assert kind == b"\x03", kind
                self.requests.append(read_exact(s, 9)[0])  # incremental flag
                if not self.updates:
                    continue
                s.sendall(self.updates.pop(0))
        except (ConnectionError, OSError):
            pass
        except AssertionError as e:
            self.error = e


def scripted_run(updates, **kwargs):
    client()  # the program RfbRun starts: fails here, clearly, when it is not built
    ours, theirs = socket.socketpair()
    server = ScriptedServer(ours, updates)
    server.start()
    run = rfb_bench.RfbRun(sock=theirs, timeout=10, **kwargs)
    return server, run


def test_first_frame_waits_for_the_whole_screen():
    # Half the screen, then the cursor, then the other half: the frame is whole at update 2.
    server, run = scripted_run([raw_update([(0, 0, 16, 4)]), raw_update([(0, 4, 16, 4)])],
                               encoding="zrle", compress=3)
    first = run.finish()
    server.join(10)
    assert server.error is None, server.error
    assert first["updates"] == 2 and first["rects"] == 2
    assert first["bytes"] > 2 * 16 * 4 * 4
    assert server.requests[0] == 0 and server.requests[1] == 1  # full, then incremental
    assert server.encodings[0] == 16 and -256 + 3 in server.encodings
    assert run.events["init"]["width"] == 16 and run.events["init"]["name"] == "fake"


def test_summary_counts_what_came_after_the_first_frame():
    later = [raw_update([(0, 0, 2, 2)])] * 5
    server, run = scripted_run([raw_update([(0, 0, 16, 8)]), *later], encoding="tight",
                               quality=5, duration=1.0)
    run.first_frame()
    summary = run.finish()
    assert server.encodings[:2] == [7, -32 + 5]
    assert summary["end"] == "duration"
    assert summary["updates"] == 5
    assert summary["bytes"] == 5 * len(later[0])
    assert summary["bytes_per_s"] == pytest.approx(summary["bytes"] / summary["seconds"], rel=0.01)


def test_a_server_that_sends_garbage_is_an_error():
    server, run = scripted_run([b"\x07garbage"])
    with pytest.raises(rfb_bench.BenchError, match="unexpected server message type 7"):
        run.finish()


def test_a_server_that_closes_early_is_an_error():
    client()
    ours, theirs = socket.socketpair()
    run = rfb_bench.RfbRun(sock=theirs, timeout=10)
    ours.sendall(b"RFB 003.008\n")
    ours.close()
    with pytest.raises(rfb_bench.BenchError):
        run.finish()


def test_parse_event_refuses_what_is_not_an_event():
    assert rfb_bench.parse_event('{"event": "init", "ms": 1}\n')["ms"] == 1
    for bad in ("not json", "[1, 2]", '{"ms": 1}'):
        with pytest.raises(rfb_bench.BenchError):
            rfb_bench.parse_event(bad)
    with pytest.raises(rfb_bench.BenchError, match="no full frame"):
        rfb_bench.parse_event('{"event": "error", "message": "no full frame"}')


def test_session_rows_and_verdicts():
    import report
    session = load_driver("session")
    result = benchlib.BenchResult("session")
    session.goal_rows(result, "idle", "ZRLE", {"kib": 0.0, "cpu": 0.0, "ups": 0.0},
                      {"kib": 0.0, "cpu": 1.2, "ups": 0.0})
    session.goal_rows(result, "xterm", "ZRLE", {"kib": 300.0, "cpu": 10.0, "ups": 20.0},
                      {"kib": 200.0, "cpu": 12.0, "ups": 15.0})
    verdicts = {row["figure"]: report.verdict(row)[1] for row in result.rows}
    assert verdicts == {"idle, ZRLE: bandwidth": True, "idle, ZRLE: CPU": True,
                        "idle, ZRLE: updates": None, "xterm, ZRLE: bandwidth": False,
                        "xterm, ZRLE: CPU": True, "xterm, ZRLE: updates": None}
    report.render_table([result.to_json()])


def test_listening_reads_proc_net_tcp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not rfb_bench.listening(port)
        s.listen()
        assert rfb_bench.listening(port)
