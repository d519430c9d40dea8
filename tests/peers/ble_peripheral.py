"""A BLE GATT peripheral for Octopus's BLE tests, on a Bumble virtual controller.

Usage: ble_peripheral.py TRANSPORT ADDRESS NAME RECORD_FILE

It advertises NAME from the static random ADDRESS and serves:
- Battery (0x180F): Battery Level (0x2A19), read and notify, holding 87;
- the Octopus test service (SERVICE):
  - TEMP, read: bytes [1, 44] (Octopus's converter turns them into its values);
  - COUNTER, read and notify: one byte that counts up and is notified every 200 ms;
  - SWITCH, read and write: one byte, 0 at start; each write is appended to RECORD_FILE
    as "SWITCH <hex>" (the tests check writes here, on the peripheral's side);
  - LOCKED, read and write: every write is refused with ATT error 0x80;
  - LONG, read: 200 bytes of text, far more than the 22 a default MTU carries;
  - NOTE, read and notify: 100 bytes of text ("note NNN ..."), notified with COUNTER.

Signals: SIGUSR1 makes it go away (drop its connections, stop advertising), SIGUSR2
brings it back. SIGHUP changes its GATT table: TEMP disappears (or comes back), so the
handles after it move; a connected client is told by a Service Changed indication.
Prints READY once advertising, then AWAY, BACK and CHANGED as they happen.
"""

import asyncio
import signal
import sys

from bumble.att import ATT_Error
from bumble.core import AdvertisingData
from bumble.device import Device, DeviceConfiguration
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.transport import open_transport

SERVICE = "6e400000-0c7a-4b8a-9a4f-3c2e0b6f7a00"
TEMP = "6e400001-0c7a-4b8a-9a4f-3c2e0b6f7a00"
COUNTER = "6e400002-0c7a-4b8a-9a4f-3c2e0b6f7a00"
SWITCH = "6e400003-0c7a-4b8a-9a4f-3c2e0b6f7a00"
LOCKED = "6e400004-0c7a-4b8a-9a4f-3c2e0b6f7a00"
LONG = "6e400005-0c7a-4b8a-9a4f-3c2e0b6f7a00"
NOTE = "6e400006-0c7a-4b8a-9a4f-3c2e0b6f7a00"

LONG_TEXT = ("octopus-" * 25).encode()


def note(n):
    """100 bytes of text that change with the counter."""
    return f"note {n:03d} ".encode().ljust(100, b".")


async def main(transport, address, name, record):
    async with await open_transport(transport) as hci:
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

        switch = {"value": bytes([0])}

        def write_switch(_connection, value):
            switch["value"] = bytes(value)
            with open(record, "a") as f:
                f.write(f"SWITCH {bytes(value).hex()}\n")

        def refuse(_connection, _value):
            raise ATT_Error(0x80)

        battery = Characteristic(
            "2A19",
            Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE,
            bytes([87]),
        )
        counter = Characteristic(
            COUNTER,
            Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE,
            bytes([0]),
        )
        note_char = Characteristic(
            NOTE,
            Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE,
            note(0),
        )
        temp = Characteristic(
            TEMP,
            Characteristic.Properties.READ,
            Characteristic.READABLE,
            bytes([1, 44]),
        )
        table = {"temp": True}

        def services():
            return [
                Service("180F", [battery]),
                Service(
                    SERVICE,
                    ([temp] if table["temp"] else [])
                    + [
                        counter,
                        Characteristic(
                            SWITCH,
                            Characteristic.Properties.READ | Characteristic.Properties.WRITE,
                            Characteristic.READABLE | Characteristic.WRITEABLE,
                            CharacteristicValue(
                                read=lambda _c: switch["value"], write=write_switch
                            ),
                        ),
                        Characteristic(
                            LOCKED,
                            Characteristic.Properties.READ | Characteristic.Properties.WRITE,
                            Characteristic.READABLE | Characteristic.WRITEABLE,
                            CharacteristicValue(read=lambda _c: bytes([7]), write=refuse),
                        ),
                        Characteristic(
                            LONG,
                            Characteristic.Properties.READ,
                            Characteristic.READABLE,
                            LONG_TEXT,
                        ),
                        note_char,
                    ],
                ),
            ]

        server = device.gatt_server
        # GAP and GATT (with Service Changed) come first and never move.
        base_attributes = list(server.attributes)
        base_services = list(server.services)
        device.add_services(services())
        await device.power_on()
        await device.start_advertising(auto_restart=True)

        loop = asyncio.get_running_loop()
        present = {"on": True}

        async def go_away():
            present["on"] = False
            await device.stop_advertising()
            for connection in list(device.connections.values()):
                try:
                    await connection.disconnect()
                except Exception as e:  # already gone
                    print(f"disconnect: {e}", file=sys.stderr)
            print("AWAY", flush=True)

        async def come_back():
            present["on"] = True
            await device.start_advertising(auto_restart=True)
            print("BACK", flush=True)

        async def change():
            table["temp"] = not table["temp"]
            server.attributes = list(base_attributes)
            server.services = list(base_services)
            server.attributes_by_handle = {}
            server.add_services(services())
            last = server.attributes[-1].handle
            changed = device.gatt_service.service_changed_characteristic
            if present["on"] and device.connections:
                start = base_attributes[-1].handle + 1
                await device.indicate_subscribers(
                    changed, start.to_bytes(2, "little") + last.to_bytes(2, "little")
                )
            print("CHANGED", "with" if table["temp"] else "without", flush=True)

        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(change()))
        loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(go_away()))
        loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(come_back()))
        print("READY", flush=True)

        n = 0
        while True:
            await asyncio.sleep(0.2)
            n = (n + 1) % 256
            counter.value = bytes([n])
            note_char.value = note(n)
            if present["on"]:
                await device.notify_subscribers(counter, bytes([n]))
                await device.notify_subscribers(note_char, note(n))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
