"""scripts/demo --check: the README's main command, non-interactive, through the whole chain
(Xvfb desktop, tether-server on its defaults, an enrolled agent, tetherctl shadow --listen,
vncsnapshot), on a free port so that it can run beside other tests."""

import os
import signal
import subprocess
import time

from tether_harness import REPO, free_port


def test_demo_check_shadows_the_demo_desktop():
    port = free_port()
    proc = subprocess.run([str(REPO / "scripts" / "demo"), "--check", "--port", str(port)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    print(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert "demo check passed" in proc.stderr
    assert "viewer_closed" in proc.stdout  # the audit row of the session it made


def test_demo_runs_until_interrupted_and_cleans_up():
    port = free_port()
    proc = subprocess.Popen([str(REPO / "scripts" / "demo"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 300
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "Tether is running" in text, text
        assert f"https://127.0.0.1:{port}/" in text
        assert "shadow " in text and "--listen 127.0.0.1:5901" in text
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "stopping everything" in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Nothing it started is left: no server on its port.
    assert subprocess.run(["ss", "-ltn", f"sport = :{port}"], capture_output=True,
                          text=True).stdout.count("LISTEN") == 0
