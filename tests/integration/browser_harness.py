"""Headless Chromium for the web app's tests: Debian's /usr/bin/chromium driven by
playwright-core (node), through browser_driver.mjs.

playwright-core is installed with npm, pinned, into a cache beside the build
(<build>/node-cache, found from TETHER_BIN_DIR), once; its own browser download is never used.
A test that cannot have node, npm's package or chromium is skipped with the reason.
"""

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tether_harness import bin_dir

PLAYWRIGHT_VERSION = "1.65.1"
CHROMIUM = os.environ.get("TETHER_CHROMIUM", "/usr/bin/chromium")
DRIVER = Path(__file__).resolve().parent / "browser_driver.mjs"


def node_cache():
    return Path(os.environ.get("TETHER_NODE_CACHE", bin_dir().parent / "node-cache"))


def ensure_playwright():
    """The node_modules directory that holds playwright-core, or pytest.skip."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the browser tests (Debian: nodejs, npm)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: chromium)")
    cache = node_cache()
    cache.mkdir(parents=True, exist_ok=True)
    modules = cache / "node_modules"
    marker = modules / "playwright-core" / "package.json"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests in parallel install once
        if marker.exists() and json.loads(marker.read_text()).get("version") == PLAYWRIGHT_VERSION:
            return modules
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
             "--no-package-lock", f"playwright-core@{PLAYWRIGHT_VERSION}"],
            capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 0 or not marker.exists():
            pytest.skip(f"cannot install playwright-core {PLAYWRIGHT_VERSION} with npm: "
                        f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return modules


class Browser:
    """One Chromium (fresh --user-data-dir) with one page; every call is a driver command."""

    def __init__(self, modules):
        self.modules = modules
        self.proc = None
        self._next = 1

    async def start(self):
        env = dict(os.environ, NODE_PATH=str(self.modules), TETHER_CHROMIUM=CHROMIUM)
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(DRIVER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=env, limit=16 * 1024 * 1024)
        await self.call("newPage")
        return self

    async def call(self, cmd, timeout=30, **args):
        request_id = self._next
        self._next += 1
        self.proc.stdin.write((json.dumps({"id": request_id, "cmd": cmd, "args": args}) + "\n")
                              .encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise AssertionError(f"the browser driver exited during {cmd}")
        answer = json.loads(line)
        assert answer["id"] == request_id, answer
        if not answer["ok"]:
            raise AssertionError(f"browser {cmd} {args}: {answer['error']}")
        return answer.get("result")

    async def close(self):
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
