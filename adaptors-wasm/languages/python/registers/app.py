"""The registers adaptor: reads Modbus TCP holding registers through the limb's socket
capability. Built from the template; build.sh adds the template's `octopus.py`.

Every language's build behaves the same and snapshots `{"polls": n}`, so the limb can
swap a device between them without losing its count.
"""

import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import socket, types

from octopus import (
    InvalidSpec,
    ProtocolError,
    Spec,
    Unreachable,
    driver_call,
    from_capability,
    load_state,
    log_info,
    log_warn,
    release,
    settings,
    to_json,
)

NAME = "adaptors.edge.cattle.io/registers"
VERSION = "0.1.0+python"
LANGUAGE = "python"
MODEL = types.Model(api_version="devices.edge.cattle.io/v1alpha1", kind="RegisterDevice")
# The spec field that names the server; the limb grants it under the same name.
ENDPOINT = "endpoint"
TIMEOUT_MS = 1000
READ_HOLDING_REGISTERS = 0x03


class Config:
    def __init__(self, spec_json):
        spec = Spec.parse(spec_json)
        self.endpoint = spec.endpoint(ENDPOINT)
        self.unit_id = spec.integer("unitId", default=1, min=0, max=255)
        self.address = spec.integer("address", default=0, min=0, max=65535)
        self.count = spec.integer("count", default=1, min=1, max=16)
        if self.address + self.count > 65536:
            raise InvalidSpec(
                f"count must keep address + count <= 65536, got {self.address} + {self.count}")
        self.interval_ms = spec.integer("syncIntervalMs", default=1000, min=10)


class Device:
    def __init__(self):
        self.config = None
        self.stream = None
        self.polls = 0

    def disconnect(self):
        release(self.stream)
        self.stream = None

    def configure(self, spec_json):
        new = Config(spec_json)
        old = self.config
        if old is not None and (old.endpoint, old.unit_id) != (new.endpoint, new.unit_id):
            self.disconnect()
        self.config = new
        return settings(new.interval_ms)

    def connect(self):
        if self.stream is None:
            try:
                self.stream = socket.connect_tcp(ENDPOINT, TIMEOUT_MS)
            except Err as err:
                raise from_capability(f"connect to {self.config.endpoint}", err)
            log_info(f"connected to {self.config.endpoint}")
        return self.stream

    def exchange(self, request, reply_len, check):
        """Sends `request`, then reads exactly the bytes of the reply: the first
        `reply_len` bytes, then as many more as `check(head)` returns. Any I/O error
        drops the connection and raises `Unreachable`."""
        stream = self.connect()
        try:
            sent = stream.send(request, TIMEOUT_MS)
            if sent != len(request):
                raise Unreachable(f"send: wrote {sent} of {len(request)} bytes")
            reply = self.receive_exactly(stream, reply_len)
            more = check(reply)
            if more:
                reply += self.receive_exactly(stream, more)
            return reply
        except Err as err:
            self.disconnect()
            raise from_capability("modbus exchange", err)
        except Unreachable:
            self.disconnect()
            raise

    @staticmethod
    def receive_exactly(stream, n):
        buf = b""
        while len(buf) < n:
            chunk = stream.receive(n - len(buf), TIMEOUT_MS)
            if not chunk:
                raise Unreachable("receive: the server closed the connection")
            buf += chunk
        return buf

    def poll(self):
        cfg = self.config
        if cfg is None:
            raise Unreachable("poll before configure")
        tid = (self.polls + 1) % 65536
        # MBAP header (transaction, protocol 0, length 6, unit) + PDU (function, address, count)
        request = struct.pack(">HHHBBHH", tid, 0, 6, cfg.unit_id, READ_HOLDING_REGISTERS,
                              cfg.address, cfg.count)

        def check(head):
            # The first 9 bytes: MBAP (7), function, then byte count or exception code.
            r_tid, r_proto, _length, r_unit, function, third = struct.unpack(">HHHBBB", head)
            if r_tid != tid or r_proto != 0 or r_unit != cfg.unit_id:
                self.disconnect()
                raise ProtocolError(
                    f"reply for transaction {r_tid} unit {r_unit}, expected {tid} unit {cfg.unit_id}")
            if function == READ_HOLDING_REGISTERS | 0x80:
                raise ProtocolError(f"exception {third}")
            if function != READ_HOLDING_REGISTERS:
                self.disconnect()
                raise ProtocolError(f"reply with function {function}, expected 3")
            if third != 2 * cfg.count:
                self.disconnect()
                raise ProtocolError(f"reply with {third} data bytes, expected {2 * cfg.count}")
            return 2 * cfg.count

        reply = self.exchange(request, 9, check)
        registers = list(struct.unpack(f">{cfg.count}H", reply[9:]))
        self.polls += 1
        return to_json(registers=registers, polls=self.polls, language=LANGUAGE)


DEVICE = Device()


class Driver(exports.Driver):
    def describe(self):
        return types.AdaptorInfo(
            name=NAME,
            version=VERSION,
            models=[types.ModelInfo(
                model=MODEL,
                resource_fields=[types.ResourceField(path=ENDPOINT, kind=types.ResourceKind.TCP)],
            )],
        )

    @driver_call
    def configure(self, config):
        return DEVICE.configure(config.spec)

    @driver_call
    def reconfigure(self, config):
        return DEVICE.configure(config.spec)

    @driver_call
    def poll(self):
        try:
            return DEVICE.poll()
        except Unreachable as failure:
            log_warn(failure.message)
            raise

    @driver_call
    def snapshot(self):
        return to_json(polls=DEVICE.polls).encode("utf-8")

    @driver_call
    def restore(self, state, from_version):
        DEVICE.polls = load_state(state, polls=0)["polls"]

    def shutdown(self):
        DEVICE.disconnect()
