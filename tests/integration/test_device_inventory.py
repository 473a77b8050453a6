"""The inventory a device reports is stored when it changes and shown by tetherctl."""

import asyncio
import json

from fake_device import FakeDevice, enroll
from tether_harness import wait_until


def inventory(*nics):
    return {
        "cpu_model": "Intel(R) Celeron(R) J4125 CPU @ 2.00GHz", "cpu_count": 4,
        "memory_kb": 8056000,
        "nics": list(nics),
        "block_devices": [{"name": "mmcblk0", "model": "DA4064", "size_bytes": 62537072640,
                           "removable": False},
                          {"name": "sda", "model": "Cruzer Blade", "size_bytes": 16008609792,
                           "removable": True}],
        "usb_devices": [{"vendor_id": "046d", "product_id": "c52b", "manufacturer": "Logitech",
                         "product": "USB Receiver", "serial": ""}],
        "displays": [{"connector": "HDMI-A-1", "connected": True,
                      "modes": ["1920x1080", "1280x720", "1024x768"]},
                     {"connector": "DP-1", "connected": False, "modes": []}],
    }


ETH0 = {"name": "eth0", "mac": "52:54:00:12:34:56", "driver": "e1000e", "link_up": True,
        "speed_mbps": 1000, "addresses": ["192.0.2.10/24", "fe80::5054:ff:fe12:3456/64"],
        "wol_supported": "pumbg", "wol_enabled": "g"}
VETH = {"name": "veth-t1", "mac": "0a:58:0a:f4:00:07", "driver": "veth", "link_up": False,
        "addresses": [], "wol_supported": "", "wol_enabled": ""}


def nic_line(text, name):
    """The line of `device show` about the NIC `name`, or None."""
    return next((line for line in text.splitlines() if f" {name} " in line), None)


def test_inventory_is_shown_and_follows_changes(server, tmp_path):
    device = enroll(server, tmp_path)

    def show():
        out = server.ctl("device", "show", device.device_id)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "none reported yet" in show()

    async def run():
        dev = await FakeDevice.online(server, device)
        await dev.send("inventory", inventory(ETH0))
        text = wait_until(lambda: nic_line(show(), "eth0"), timeout=5,
                          what="the NIC in device show") and show()
        eth0 = nic_line(text, "eth0")
        assert "52:54:00:12:34:56" in eth0, eth0
        for part in ("eth0", "up 1000 Mb/s", "192.0.2.10/24", "WoL on (g), supports pumbg"):
            assert part in eth0, eth0
        assert "4 x Intel(R) Celeron(R) J4125" in text
        assert "7867 MiB" in text
        assert any("sda" in line and "removable" in line and "14.9 GiB" in line
                   for line in text.splitlines()), text
        assert "046d:c52b" in text and "Logitech USB Receiver" in text
        assert "HDMI-A-1" in text and "1920x1080 (+2 modes)" in text
        assert "disconnected" in text

        # A new interface (a veth added in the device's namespace) shows up within seconds.
        await dev.send("inventory", inventory(ETH0, VETH))
        veth = wait_until(lambda: nic_line(show(), "veth-t1"), timeout=5,
                          what="the new NIC in device show")
        assert "0a:58:0a:f4:00:07" in veth and "down" in veth and "WoL unsupported" in veth, veth
        await dev.close()

    asyncio.run(run())
    # Stored, not only in memory: --json carries the last inventory as the device sent it.
    shown = json.loads(server.ctl("device", "show", device.device_id, "--json").stdout)
    assert [n["name"] for n in shown["inventory"]["nics"]] == ["eth0", "veth-t1"]
    assert shown["online"] is False
