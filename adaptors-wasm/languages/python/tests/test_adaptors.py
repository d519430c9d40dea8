"""Native unit tests for both Python adaptors, run by build.sh under the host's CPython
before componentizing (a traceback here beats a bare `internal` error from wasm).

    python3 tests/test_adaptors.py BINDINGS_DIR

BINDINGS_DIR holds `componentize-py bindings` output; the imports (socket, log) are
replaced by fakes, so no limb and no Modbus server are needed.
"""

import importlib.util
import json
import struct
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, sys.argv.pop(1) if len(sys.argv) > 1 else str(HERE / "bindings"))
sys.path.insert(1, str(HERE / "template"))  # octopus.py, for both adaptors (as build.sh)

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import log, socket, types  # noqa: E402

log.log = lambda level, message: None

# What build.sh makes of template/models.json.
_declared = type(sys)("declared_models")
_declared.DECLARATIONS = (HERE / "template" / "models.json").read_text()
sys.modules["declared_models"] = _declared


def load(name, folder):
    spec = importlib.util.spec_from_file_location(name, HERE / folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


counter = load("counter_app", "template")
registers = load("registers_app", "registers")


def config(spec):
    return types.DeviceConfig(
        model=types.Model(api_version="devices.edge.cattle.io/v1alpha1", kind="X"),
        device=types.DeviceIdentity(namespace="default", name="d", uid="u"),
        spec=json.dumps(spec),
        references=[],
    )


class AdaptorTest(unittest.TestCase):
    def assertError(self, variant, call, *args, contains=""):
        with self.assertRaises(Err) as caught:
            call(*args)
        self.assertIsInstance(caught.exception.value, variant, caught.exception.value)
        self.assertIn(contains, caught.exception.value.value)
        return caught.exception.value.value


class CounterTest(AdaptorTest):
    def setUp(self):
        counter.DEVICE = counter.Device()
        self.d = counter.Driver()

    def test_declares_its_model(self):
        (m,) = counter.Models().describe_models()
        self.assertEqual(m.model.kind, "CounterDevice")
        self.assertEqual(json.loads(m.spec)["properties"]["step"]["type"], "integer")
        self.assertEqual(m.short_names, ["counter"])
        self.assertIn(".status.count", [c.json_path for c in m.printer_columns])

    def test_describe(self):
        info = self.d.describe()
        self.assertEqual(info.name, "adaptors.edge.cattle.io/counter")
        self.assertEqual(info.version, "0.1.0+python")
        self.assertEqual(info.models[0].model.kind, "CounterDevice")
        self.assertEqual(info.models[0].resource_fields, [])

    def test_poll_snapshot_restore(self):
        self.assertEqual(self.d.configure(config({})).poll_interval_ms, 1000)
        self.assertEqual(json.loads(self.d.poll()), {"count": 1, "language": "python"})
        self.d.reconfigure(config({"step": 5, "syncIntervalMs": 10, "other": "x"}))
        self.assertEqual(json.loads(self.d.poll())["count"], 6)
        self.assertEqual(self.d.snapshot(), b'{"count":6}')
        self.d.restore(b'{"count": 41}', "0.1.0+rust")
        self.assertEqual(json.loads(self.d.poll())["count"], 46)

    def test_bug_is_internal_not_trap(self):
        counter.DEVICE = None
        self.assertError(types.AdaptorError_Internal, self.d.poll, contains="AttributeError")

    def test_invalid(self):
        self.assertError(types.AdaptorError_InvalidSpec, self.d.configure, config({"step": "2"}),
                         contains="step must be an integer")
        self.assertError(types.AdaptorError_InvalidSpec, self.d.configure,
                         config({"syncIntervalMs": 5}), contains="syncIntervalMs must be >= 10, got 5")
        for bad in [b"", b"[]", b'{"count": 1.5}', b'{"count": true}', b'{"polls": 1}', b"\xff"]:
            self.assertError(types.AdaptorError_IncompatibleState, self.d.restore, bad, "x")


class FakeStream:
    """A Modbus TCP server on the other end of a stream: answers every request with
    `answer(request)`, delivered in chunks of `chunk` bytes."""

    def __init__(self, answer, chunk=3):
        self.answer, self.chunk, self.pending, self.requests, self.dropped = answer, chunk, b"", [], False

    def send(self, data, timeout_ms):
        self.requests.append(bytes(data))
        self.pending += self.answer(bytes(data))
        return len(data)

    def receive(self, max, timeout_ms):
        if self.pending is None:
            raise Err(types.CapabilityError_Timeout())
        n = min(max, self.chunk)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def __exit__(self, *exc):
        self.dropped = True


def holding(values):
    def answer(req):
        tid, _, _, unit, fn, addr, count = struct.unpack(">HHHBBHH", req)
        data = struct.pack(f">{count}H", *values[addr:addr + count])
        return struct.pack(">HHHBBB", tid, 0, 3 + len(data), unit, fn, len(data)) + data
    return answer


class RegistersTest(AdaptorTest):
    SPEC = {"endpoint": "127.0.0.1:502", "count": 2, "syncIntervalMs": 200}

    def setUp(self):
        registers.DEVICE = registers.Device()
        self.d = registers.Driver()
        self.streams = []
        self.connect = lambda grant, timeout: self.open(holding([53191, 54321, 7]))
        socket.connect_tcp = lambda grant, timeout: self.connect(grant, timeout)

    def open(self, answer):
        self.streams.append(FakeStream(answer))
        return self.streams[-1]

    def test_describe(self):
        info = self.d.describe()
        self.assertEqual(info.name, "adaptors.edge.cattle.io/registers")
        field = info.models[0].resource_fields[0]
        self.assertEqual((field.path, field.kind), ("endpoint", types.ResourceKind.TCP))

    def test_poll(self):
        self.assertEqual(self.d.configure(config(self.SPEC)).poll_interval_ms, 200)
        self.assertEqual(self.streams, [])  # configure connects nothing
        for n in (1, 2):
            self.assertEqual(json.loads(self.d.poll()),
                             {"registers": [53191, 54321], "polls": n, "language": "python"})
        self.assertEqual(len(self.streams), 1)
        self.assertEqual(self.streams[0].requests[0], bytes.fromhex("000100000006010300000002"))
        self.assertEqual(self.d.snapshot(), b'{"polls":2}')

    def test_restore_sets_transaction_id(self):
        self.d.restore(b'{"polls": 65535}', "0.1.0+go")
        self.d.configure(config(dict(self.SPEC, unitId=9, address=1, count=1)))
        self.assertEqual(json.loads(self.d.poll()), {"registers": [54321], "polls": 65536, "language": "python"})
        self.assertEqual(self.streams[0].requests[0], bytes.fromhex("000000000006090300010001"))

    def test_spec_errors(self):
        for spec, message in [
            ({}, "endpoint is required"),
            ({"endpoint": 5}, "endpoint must be a string"),
            ({"endpoint": "nohost"}, "endpoint must be host:port"),
            ({"count": 40}, "count must be 1..=16, got 40"),
            ({"count": 0}, "count must be 1..=16, got 0"),
            ({"unitId": 256}, "unitId must be 0..=255, got 256"),
            ({"unitId": True}, "unitId must be an integer, got true"),
            ({"address": -1}, "address must be 0..=65535, got -1"),
            ({"address": 65530, "count": 7}, "address + count <= 65536"),
            ({"syncIntervalMs": 9}, "syncIntervalMs must be >= 10, got 9"),
        ]:
            spec = dict({"endpoint": "h:1"}, **spec) if "endpoint" not in spec and spec else spec
            self.assertError(types.AdaptorError_InvalidSpec, self.d.configure, config(spec), contains=message)
        self.assertError(types.AdaptorError_InvalidSpec, self.d.configure, config([1]), contains="JSON object")

    def test_unreachable_and_reconnect(self):
        self.d.configure(config(self.SPEC))
        self.connect = lambda g, t: (_ for _ in ()).throw(Err(types.CapabilityError_Io(value="refused")))
        self.assertError(types.AdaptorError_Unreachable, self.d.poll, contains="refused")
        self.connect = lambda g, t: (_ for _ in ()).throw(Err(types.CapabilityError_NotPermitted(value="policy")))
        self.assertError(types.AdaptorError_NotPermitted, self.d.poll, contains="policy")
        self.connect = lambda g, t: self.open(lambda req: b"\x00\x01")  # closes mid-frame
        self.assertError(types.AdaptorError_Unreachable, self.d.poll, contains="closed")
        self.assertTrue(self.streams[-1].dropped)
        self.connect = lambda g, t: self.open(holding([1, 2]))
        self.assertEqual(json.loads(self.d.poll())["polls"], 1)
        self.streams[-1].send = lambda data, t: len(data)  # the server goes silent:
        self.streams[-1].pending = None  # the next receive times out
        self.assertError(types.AdaptorError_Unreachable, self.d.poll, contains="timed out")
        self.assertTrue(self.streams[-1].dropped)

    def test_protocol_errors(self):
        self.d.configure(config(self.SPEC))
        self.connect = lambda g, t: self.open(
            lambda req: req[:4] + b"\x00\x03" + req[6:7] + b"\x83\x02")
        self.assertError(types.AdaptorError_Protocol, self.d.poll, contains="exception 2")
        self.assertFalse(self.streams[-1].dropped)  # a clean exception frame keeps the stream
        registers.DEVICE.disconnect()
        self.connect = lambda g, t: self.open(lambda req: b"\x12\x34" + holding([1, 2])(req)[2:])
        self.assertError(types.AdaptorError_Protocol, self.d.poll, contains="transaction")
        self.connect = lambda g, t: self.open(lambda req: holding([1])(req[:-1] + b"\x01"))
        self.assertError(types.AdaptorError_Protocol, self.d.poll, contains="data bytes")
        self.assertEqual(registers.DEVICE.polls, 0)

    def test_reconfigure_keeps_connection(self):
        self.d.configure(config(self.SPEC))
        self.d.poll()
        self.d.reconfigure(config(dict(self.SPEC, syncIntervalMs=500, count=1)))
        self.d.poll()
        self.assertEqual(len(self.streams), 1)
        self.d.reconfigure(config(dict(self.SPEC, unitId=2)))
        self.assertTrue(self.streams[0].dropped)
        self.d.poll()
        self.assertEqual(len(self.streams), 2)
        self.d.shutdown()
        self.assertTrue(self.streams[1].dropped)

    def test_bad_state(self):
        for bad in [b"{}", b'{"polls": -1}', b'{"polls": 2.0}', b'{"polls": "3"}', b"[3]", b"3"]:
            self.assertError(types.AdaptorError_IncompatibleState, self.d.restore, bad, "x")


if __name__ == "__main__":
    unittest.main(verbosity=1)
