"""Many BLE peripherals in one process, for the BLE benchmark (host/benches/ble.rs).

Usage: ble_bench.py PERIOD_MS LIMB_PORT PORT...

One Bumble virtual link. The limb's controller is an H4-over-TCP server on LIMB_PORT;
each PORT is another controller with one GATT peripheral on it (connected over loopback
TCP, in this process), at the static random address C0:98:E5:49:10:NN (NN = 01, 02, ...
in hex). Each peripheral serves:
- VALUE, read: 8 bytes;
- TICK, read and notify: every PERIOD_MS (peripherals staggered), "SEQ MS" as text, SEQ
  counting up from 1 and MS the wall clock in milliseconds when it is sent.
Prints READY once every peripheral advertises.
"""

import asyncio
import sys
import time

from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Device, DeviceConfiguration
from bumble.gatt import Characteristic, Service
from bumble.hci import Address
from bumble.link import LocalLink
from bumble.transport import open_transport

SERVICE = "6e400100-0c7a-4b8a-9a4f-3c2e0b6f7a00"
VALUE = "6e400101-0c7a-4b8a-9a4f-3c2e0b6f7a00"
TICK = "6e400102-0c7a-4b8a-9a4f-3c2e0b6f7a00"


async def peripheral(link, index, port, period):
    server = await open_transport(f"tcp-server:127.0.0.1:{port}")
    Controller(f"P{index}", host_source=server.source, host_sink=server.sink, link=link)
    hci = await open_transport(f"tcp-client:127.0.0.1:{port}")
    name = f"Bench-{index:02d}"
    address = f"C0:98:E5:49:10:{index:02X}"
    adv = bytes(
        AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),
                (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
            ]
        )
    )
    config = DeviceConfiguration(name=name, address=Address(address), advertising_data=adv)
    device = Device.from_config_with_hci(config, hci.source, hci.sink)
    tick = Characteristic(
        TICK,
        Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
        Characteristic.READABLE,
        b"0 0",
    )
    device.add_services(
        [
            Service(
                SERVICE,
                [
                    Characteristic(
                        VALUE,
                        Characteristic.Properties.READ,
                        Characteristic.READABLE,
                        bytes(range(8)),
                    ),
                    tick,
                ],
            )
        ]
    )
    await device.power_on()
    await device.start_advertising(auto_restart=True)

    async def ticks():
        await asyncio.sleep(period * index / 8)
        seq = 0
        while True:
            await asyncio.sleep(period)
            seq += 1
            value = f"{seq} {int(time.time() * 1000)}".encode()
            tick.value = value
            await device.notify_subscribers(tick, value)

    return (server, hci, device, asyncio.ensure_future(ticks()))


async def main(period_ms, limb_port, ports):
    link = LocalLink()
    limb = await open_transport(f"tcp-server:127.0.0.1:{limb_port}")
    Controller("LIMB", host_source=limb.source, host_sink=limb.sink, link=link)
    period = int(period_ms) / 1000
    keep = [await peripheral(link, i + 1, port, period) for i, port in enumerate(ports)]
    print("READY", len(keep), flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
