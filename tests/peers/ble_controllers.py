"""Bumble virtual BLE controllers on one virtual link, for Octopus's BLE tests.

Usage: ble_controllers.py PORT...

Each PORT is an H4-over-TCP server (127.0.0.1) with one controller behind it; all of
them share one link, so what one advertises the others scan. Bumble's own
`bumble.apps.controllers` takes exactly two in 0.0.236; the tests need three (two
peripherals and the limb). Prints READY once every port listens.
"""

import asyncio
import sys

from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport


async def main(ports):
    link = LocalLink()
    transports = []
    for index, port in enumerate(ports):
        transport = await open_transport(f"tcp-server:127.0.0.1:{port}")
        transports.append(transport)
        Controller(f"C{index}", host_source=transport.source, host_sink=transport.sink, link=link)
    print("READY", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
