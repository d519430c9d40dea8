"""Bumble virtual BLE controllers on one virtual link, for Octopus's BLE tests.

Usage: ble_controllers.py PORT|TRANSPORT...

Each PORT is an H4-over-TCP server (127.0.0.1) with one controller behind it; any
other argument is a Bumble transport spec for one (`serial:/dev/pts/N`: H4 over a
serial line, which the UART test makes with a socat pty pair). All of them share one link, so what one advertises the others scan. Bumble's own
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
        spec = f"tcp-server:127.0.0.1:{port}" if port.isdigit() else port
        transport = await open_transport(spec)
        transports.append(transport)
        Controller(f"C{index}", host_source=transport.source, host_sink=transport.sink, link=link)
    print("READY", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
