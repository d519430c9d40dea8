"""A Modbus TCP or RTU slave for the end-to-end tests, on pymodbus 3.16.1 (the peer).

    python modbus_server.py tcp HOST PORT
    python modbus_server.py rtu PATH BAUD

Serves worker (unit) IDs 1 and 2. Prints one line `READY <what>` on stdout once the
port listens (TCP) or the serial line is open (RTU), then serves until killed.

Over RTU a request for a worker ID that does not exist is not answered, as on a real
bus (the master times out). Over TCP pymodbus answers it with exception 11 (gateway
target failed to respond).

Addressing: every address below is the PDU (protocol) address, i.e. what a DeviceLink's
`visitor.offset` and `mbpoll -0 -r` take. pymodbus 3.16 blocks start at address 1 for
PDU address 0, hence `BLOCK_START = 1`.

Byte orders of multi-register values (bytes of the value, most significant first, are
A B C D [E F G H]; registers are sent high byte first):

    BigEndian        ABCD      ABCDEFGH
    BigEndianSwap    BADC      BADCFEHG   (bytes swapped inside every register)
    LittleEndian     CDAB      GHEFCDAB   (register order reversed)
    LittleEndianSwap DCBA      HGFEDCBA   (all bytes reversed)

Layout (the same for both workers except where "unit" appears). Mirrored as constants
in host/tests/e2e/modbus.rs; change both together.

Holding registers (read/write):
    addr   regs  type       order             value
    0      1     int16      -                 -12345            (0xCFC7)
    1      1     uint16     -                 54321             (0xD431)
    2      1     hexString  -                 "beef"            (0xBEEF)
    4      4     string     -                 "OCTOPUS!"        (ASCII, 2 chars a register, first in the high byte)
    10     2     int32      BigEndian         -123456789        (0xF8A432EB)
    12     2     int32      BigEndianSwap     -123456789
    14     2     int32      LittleEndian      -123456789
    16     2     int32      LittleEndianSwap  -123456789
    18     2     uint32     BigEndian         3000000000        (0xB2D05E00)
    20..24 2     uint32     BES, LE, LES      3000000000
    26     2     float      BigEndian         123.456           (0x42F6E979)
    28..32 2     float      BES, LE, LES      123.456
    40     4     int64      BigEndian         -1234567890123456789 (0xEEDDEF0B82167EEB)
    44..52 4     int64      BES, LE, LES      -1234567890123456789
    56     4     uint64     BigEndian         12345678901234567890 (0xAB54A98CEB1F0AD2)
    60..68 4     uint64     BES, LE, LES      12345678901234567890
    72     4     double     BigEndian         2.718281828459045 (0x4005BF0A8B145769)
    76..84 4     double     BES, LE, LES      2.718281828459045
    100    1     uint16     -                 unit * 1111       (1111 or 2222: who answered)
    101    1     int16      -                 -245              (arithmetic)
    102    1     uint16     -                 1000              (arithmetic)
    103    2     float      BigEndian         unit * 1.25       (1.25 or 2.5)
    200    1     int16      -                 0                 (write area)
    202    2     uint32     BigEndian         0                 (write area)
    204    2     float      BigEndian         0                 (write area)
    206    1     uint16     -                 0                 (write area)
    0..399 exist; 400 and above raise exception 2 (illegal data address).

Input registers (read only):
    0      1     uint16     -                 1234
    1      1     int16      -                 -1000             (0xFC18)
    2      2     float      BigEndian         3.5               (0x40600000)
    4      2     float      LittleEndian      3.5
    6      2     int32      BigEndian         -100000           (0xFFFE7960)
    10     1     uint16     -                 unit * 10
    0..399 exist.

Coils (read/write), 0 and 1 listed from address 0:
    0..7   unit 1: 1 0 1 1 0 0 0 0   unit 2: 0 1 0 0 1 1 1 1
    60     0                                                  (write area)
    0..399 exist.

Discrete inputs (read only):
    0..7   0 1 1 0 1 0 0 1
    0..399 exist.
"""

import asyncio
import logging
import struct
import sys

from pymodbus import FramerType
from pymodbus.exceptions import NoSuchIdException
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

BLOCK_START = 1  # pymodbus 3.16: block address 1 == PDU address 0
SIZE = 400
ORDERS = ["BigEndian", "BigEndianSwap", "LittleEndian", "LittleEndianSwap"]


def order(raw: bytes, endianness: str) -> bytes:
    """Big-endian bytes of a value -> the bytes on the wire in `endianness`."""
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if endianness == "BigEndian":
        return raw
    if endianness == "BigEndianSwap":
        return b"".join(w[::-1] for w in words)
    if endianness == "LittleEndian":
        return b"".join(reversed(words))
    if endianness == "LittleEndianSwap":
        return raw[::-1]
    raise ValueError(endianness)


def registers(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def put(table: list[int], addr: int, raw: bytes, endianness: str = "BigEndian"):
    regs = registers(order(raw, endianness))
    table[addr : addr + len(regs)] = regs


def holding(unit: int) -> list[int]:
    hr = [0] * SIZE
    put(hr, 0, struct.pack(">h", -12345))
    put(hr, 1, struct.pack(">H", 54321))
    put(hr, 2, bytes.fromhex("beef"))
    put(hr, 4, b"OCTOPUS!")
    for i, e in enumerate(ORDERS):
        put(hr, 10 + 2 * i, struct.pack(">i", -123456789), e)
        put(hr, 18 + 2 * i, struct.pack(">I", 3000000000), e)
        put(hr, 26 + 2 * i, struct.pack(">f", 123.456), e)
        put(hr, 40 + 4 * i, struct.pack(">q", -1234567890123456789), e)
        put(hr, 56 + 4 * i, struct.pack(">Q", 12345678901234567890), e)
        put(hr, 72 + 4 * i, struct.pack(">d", 2.718281828459045), e)
    put(hr, 100, struct.pack(">H", unit * 1111))
    put(hr, 101, struct.pack(">h", -245))
    put(hr, 102, struct.pack(">H", 1000))
    put(hr, 103, struct.pack(">f", unit * 1.25))
    return hr


def inputs(unit: int) -> list[int]:
    ir = [0] * SIZE
    put(ir, 0, struct.pack(">H", 1234))
    put(ir, 1, struct.pack(">h", -1000))
    put(ir, 2, struct.pack(">f", 3.5))
    put(ir, 4, struct.pack(">f", 3.5), "LittleEndian")
    put(ir, 6, struct.pack(">i", -100000))
    put(ir, 10, struct.pack(">H", unit * 10))
    return ir


def coils(unit: int) -> list[int]:
    co = [0] * SIZE
    co[0:8] = [1, 0, 1, 1, 0, 0, 0, 0] if unit == 1 else [0, 1, 0, 0, 1, 1, 1, 1]
    return co


def discrete(unit: int) -> list[int]:
    di = [0] * SIZE
    di[0:8] = [0, 1, 1, 0, 1, 0, 0, 1]
    return di


def device(unit: int) -> ModbusDeviceContext:
    return ModbusDeviceContext(
        di=ModbusSequentialDataBlock(BLOCK_START, discrete(unit)),
        co=ModbusSequentialDataBlock(BLOCK_START, coils(unit)),
        hr=ModbusSequentialDataBlock(BLOCK_START, holding(unit)),
        ir=ModbusSequentialDataBlock(BLOCK_START, inputs(unit)),
    )


def context() -> ModbusServerContext:
    return ModbusServerContext(devices={1: device(1), 2: device(2)}, single=False)


class KnownDevicesOnly:
    """pymodbus 3.16 turns the context into a SimCore that answers an unknown device ID
    with device 0 or, without one, a KeyError (exception 4). Raising NoSuchIdException
    instead gives what the docstring says: silence on RTU, exception 11 on TCP."""

    def __init__(self, core):
        self._core = core

    def _check(self, device_id: int):
        if device_id not in self._core.device_ids():
            raise NoSuchIdException(f"device_id {device_id} does not exist")

    async def async_getValues(self, device_id, *args, **kwargs):
        self._check(device_id)
        return await self._core.async_getValues(device_id, *args, **kwargs)

    async def async_setValues(self, device_id, *args, **kwargs):
        self._check(device_id)
        return await self._core.async_setValues(device_id, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._core, name)


async def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    kind = sys.argv[1]
    if kind == "tcp":
        host, port = sys.argv[2], int(sys.argv[3])
        server = ModbusTcpServer(context(), address=(host, port))
        what = f"tcp {host}:{port}"
    elif kind == "rtu":
        path, baud = sys.argv[2], int(sys.argv[3])
        server = ModbusSerialServer(
            context(),
            framer=FramerType.RTU,
            port=path,
            baudrate=baud,
            bytesize=8,
            parity="N",
            stopbits=1,
            ignore_missing_devices=True,
        )
        what = f"rtu {path} {baud}"
    else:
        sys.exit(f"usage: {sys.argv[0]} tcp HOST PORT | rtu PATH BAUD")
    server.context = KnownDevicesOnly(server.context)
    await server.serve_forever(background=True)
    print(f"READY {what}", flush=True)
    await server.serving


if __name__ == "__main__":
    asyncio.run(main())
