"""The web app's viewer on the real chain, in headless Chromium (playwright-core with Debian's
chromium): Xvfb with a known colour, the real tether-server, an enrolled tether-agent that
shadows that display (tether-vnc as it spawns it), and noVNC in the web app's viewer page.

Shows (issue 7): the canvas shows the display's picture and follows its change; keys typed
into the canvas reach an X client on the display (xev, which has the input focus); in
view-only mode the same typing does not; the time from clicking Shadow to the first picture
is printed, not asserted."""

import asyncio
import re
import subprocess
import threading
import time

import pytest

from browser_harness import Browser, ensure_playwright
from test_shadow_agent import Rig, hex_colour, need
from test_webapp import SCREENSHOTS, check_browser_saw_no_violations, login_with_token
from tether_harness import wait_until
from vnc_harness import Xvfb

GREEN = (0x00, 0xA0, 0x50)
RED = (0xC8, 0x1E, 0x1E)
PURPLE = (0x80, 0x20, 0xC0)
YELLOW = (0xE0, 0xD0, 0x10)
WIDTH, HEIGHT = 640, 480
# xev's window sits in the top left corner; the colour is read at 3/4 of the way across and
# down, on the root window.
XEV_GEOMETRY = "200x150+0+0"

CANVAS_PIXEL = """(want) => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || canvas.width < 4) return null;
    const p = canvas.getContext('2d').getImageData((canvas.width * 3) >> 2,
                                                   (canvas.height * 3) >> 2, 1, 1).data;
    const got = [p[0], p[1], p[2]];
    return want === null || got.every((v, i) => Math.abs(v - want[i]) <= 4) ? got : null;
}"""


class Xev:
    """xev on the display with a window of its own that holds the input focus; collects the
    keysyms of the KeyPress events it reports."""

    def __init__(self, xvfb):
        self.xvfb = xvfb
        self.lines = []
        self._lock = threading.Lock()
        # stdbuf: xev writes through stdio, block-buffered into a pipe.
        self.proc = xvfb.popen("stdbuf", "-oL", "xev", "-display", xvfb.display, "-geometry",
                               XEV_GEOMETRY, "-event", "keyboard", "-name", "tether-xev",
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.window = wait_until(self._window, timeout=15, what="xev's window: " + self.text())
        # No window manager: give it the focus ourselves (and the pointer, for PointerRoot).
        xvfb.run("xdotool", "mousemove", "20", "20")
        result = xvfb.run("xdotool", "windowfocus", "--sync", self.window)
        assert result.returncode == 0, result.stderr

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line)

    def text(self):
        with self._lock:
            return "".join(self.lines)

    def _window(self):
        match = re.search(r"Outer window is (0x[0-9a-f]+)", self.text())
        return match and str(int(match.group(1), 16))

    def keysyms(self):
        """The keysym names of the KeyPress events so far, in order."""
        names = []
        for event in self.text().split("\n\n"):
            if event.startswith("KeyPress event"):
                match = re.search(r"keysym 0x[0-9a-f]+, (\w+)\)", event)
                if match:
                    names.append(match.group(1))
        return names

    def focused(self):
        return self.xvfb.run("xdotool", "getwindowfocus").stdout.strip() == self.window

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def xvfb():
    need("Xvfb", "xdotool", "xsetroot", "xdpyinfo", "xev", "stdbuf")
    x = Xvfb(width=WIDTH, height=HEIGHT).start()
    x.solid(hex_colour(GREEN))
    yield x
    x.stop()


@pytest.fixture
def playwright_modules():
    return ensure_playwright()


async def open_viewer(browser, rig, button, colour):
    """From the device's page, clicks `button`; waits for noVNC to connect and the canvas to
    show `colour`. Returns the seconds from the click to that picture."""
    await browser.call("goto", url=rig.server.url + f"/#/device/{rig.device_id}")
    await browser.call("waitFor", selector="#device-view")
    await browser.call("waitFor", selector=button)
    started = time.monotonic()
    await browser.call("click", selector=button)
    await browser.call("waitForFunction", ms=30000, timeout=40,
                       expression="() => window.tetherViewer && "
                                  "['connected', 'refused', 'disconnected', 'failed']"
                                  ".includes(window.tetherViewer.state)")
    state = await browser.call("evaluate", expression="() => window.tetherViewer.state")
    assert state == "connected", (await browser.call("text", selector="body")) + rig.agent.log()
    await wait_for_colour(browser, colour, "viewer-real-chain-failed.png")
    return time.monotonic() - started


async def wait_for_colour(browser, colour, screenshot):
    try:
        await browser.call("waitForFunction", arg=list(colour), expression=CANVAS_PIXEL,
                           ms=20000, timeout=30)
    except AssertionError:
        seen = await browser.call("evaluate", expression=CANVAS_PIXEL, arg=None)
        await browser.call("screenshot", file=str(SCREENSHOTS / screenshot))
        raise AssertionError(f"the canvas shows {seen}, not {colour}")


async def disconnect(browser, rig):
    await browser.call("click", selector="#disconnect")
    await browser.call("waitForFunction",
                       expression="() => window.tetherViewer.state.startsWith('disconnected') "
                                  "&& document.querySelector('#status').textContent !== "
                                  "'disconnected'", ms=15000, timeout=25)
    await asyncio.to_thread(rig.agent_idle)


def test_browser_shadows_the_real_display_and_types_into_it(server, make_agent, xvfb,
                                                            playwright_modules):
    need()
    rig = Rig(server, make_agent, xvfb.display, **{"discovery.port": "0"})
    wait_until(lambda: rig.device()["online"], what="the device online")
    xev = Xev(xvfb)

    async def run():
        browser = await Browser(playwright_modules).start()
        try:
            await login_with_token(browser, server)
            elapsed = await open_viewer(browser, rig, "#shadow", GREEN)
            print(f"\nreal chain: Shadow clicked to the first picture in the canvas: "
                  f"{elapsed * 1000:.0f} ms")
            assert await browser.call("evaluate",
                                      expression="() => window.tetherViewer.rfb.viewOnly") is False
            # The picture changes on the display: the canvas follows.
            await asyncio.to_thread(xvfb.solid, hex_colour(RED))
            await wait_for_colour(browser, RED, "viewer-real-chain-change.png")

            # Typing in the canvas reaches the X client that has the focus.
            assert xev.focused(), "xev lost the input focus"
            await browser.call("clickAt", selector="#screen canvas", x=20, y=20)
            await browser.call("type", text="hi")
            await asyncio.to_thread(
                wait_until, lambda: xev.keysyms()[-2:] == ["h", "i"], timeout=15,
                what=f"KeyPress h, i at xev; it saw {xev.keysyms()}")
            await disconnect(browser, rig)

            # View-only: the picture shows, typing does not reach the display.
            await asyncio.to_thread(xvfb.solid, hex_colour(PURPLE))
            await open_viewer(browser, rig, "#shadow-view-only", PURPLE)
            assert await browser.call("evaluate",
                                      expression="() => window.tetherViewer.rfb.viewOnly") is True
            assert "view only" in await browser.call("text", selector="#status")
            before = xev.keysyms()
            assert xev.focused(), "xev lost the input focus"
            await browser.call("clickAt", selector="#screen canvas", x=20, y=20)
            await browser.call("type", text="xy")
            # Barriers: the viewer pipeline flows (a new colour reaches the canvas, after the
            # keys would have gone the same way), then a key from an X client of our own
            # reaches xev (after any injected key would have).
            await asyncio.to_thread(xvfb.solid, hex_colour(YELLOW))
            await wait_for_colour(browser, YELLOW, "viewer-real-chain-view-only.png")
            result = await asyncio.to_thread(xvfb.run, "xdotool", "key", "z")
            assert result.returncode == 0, result.stderr
            await asyncio.to_thread(
                wait_until, lambda: xev.keysyms()[len(before):][-1:] == ["z"], timeout=15,
                what=f"the barrier key z at xev; it saw {xev.keysyms()}")
            assert xev.keysyms()[len(before):] == ["z"], xev.keysyms()
            await disconnect(browser, rig)

            check_browser_saw_no_violations(await browser.call("responses"),
                                            await browser.call("console"), server)
        finally:
            await browser.close()

    try:
        asyncio.run(run())
        # The audit (newest first): the two browser sessions, as asked, ended by the viewer.
        rows = [(row["viewer"], row["view_only"], row["end_reason"]) for row in rig.audit()]
        assert rows == [("browser", True, "viewer_closed"),
                        ("browser", False, "viewer_closed")], rows
    finally:
        xev.stop()
        rig.agent.stop()
