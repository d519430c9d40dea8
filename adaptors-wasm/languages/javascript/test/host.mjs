// A fake limb for the built components: runs them in Node (transpiled by `jco transpile`)
// with the octopus:adaptor imports faked in JavaScript, and checks the behaviour contract
// of ../../README.md, including the cases a live Modbus server rarely produces (replies
// in pieces, wrong transaction ids, closed streams, timeouts). Run by ../test.sh.
//
//   node host.mjs COUNTER_DIR REGISTERS_DIR   (each the output of `jco transpile -I async`)
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [counterDir, registersDir] = process.argv.slice(2);
const logs = [];
let failures = 0;

function test(name, fn) {
  try {
    fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}\n     ${e.stack.split("\n").slice(0, 3).join("\n     ")}`);
  }
}

// ---------------------------------------------------------------- the fake capabilities

const capErr = (tag, val) => ({ payload: val === undefined ? { tag } : { tag, val } });

// The device: a script of replies, one per request; each reply is a list of chunks that
// successive receive calls return, or a function that throws.
const net = { connects: 0, disposed: 0, requests: [], script: [], connectError: null, timeouts: [] };

class TcpStream {
  constructor() {
    this.pending = [];
  }
  send(data, timeoutMs) {
    net.timeouts.push(timeoutMs);
    net.requests.push(Array.from(data));
    const next = net.script.shift();
    if (typeof next === "function") next();
    else this.pending = (next ?? []).map((c) => Uint8Array.from(c));
    return data.length;
  }
  receive(max, timeoutMs) {
    net.timeouts.push(timeoutMs);
    if (this.pending.length === 0) throw capErr("timeout");
    const c = this.pending.shift();
    if (c.length > max) {
      this.pending.unshift(c.subarray(max));
      return c.subarray(0, max);
    }
    return c;
  }
  [Symbol.dispose]() {
    net.disposed++;
  }
}
class Stub {}

const imports = {
  "octopus:adaptor/log": { log: (level, msg) => logs.push(`${level}: ${msg}`) },
  "octopus:adaptor/clock": {
    nowMs: () => BigInt(Date.now()),
    monotonicNs: () => process.hrtime.bigint(),
  },
  "octopus:adaptor/events": { reportStatus() {}, recordEvent() {} },
  "octopus:adaptor/types": {},
  "octopus:adaptor/serial": { Port: Stub, open: () => { throw capErr("not-permitted", "no serial"); } },
  "octopus:adaptor/gpio": {
    Line: Stub,
    open: () => { throw capErr("not-permitted", "no gpio"); },
    request: () => { throw capErr("not-permitted", "no gpio"); },
  },
  "octopus:adaptor/ble": { Peripheral: Stub, find: () => { throw capErr("not-permitted", "no ble"); } },
  "octopus:adaptor/socket": {
    TcpStream,
    UdpSocket: Stub,
    connectTcp(grant, timeoutMs) {
      assert.equal(grant, "endpoint");
      net.timeouts.push(timeoutMs);
      if (net.connectError) throw net.connectError;
      net.connects++;
      return new TcpStream();
    },
    connectTls: () => { throw capErr("not-permitted", "no tls"); },
    connectUdp: () => { throw capErr("not-permitted", "no udp"); },
  },
};

async function load(dir) {
  const js = (await fs.readdir(dir)).find((f) => f.endsWith(".js"));
  const mod = await import(pathToFileURL(path.join(dir, js)).href);
  const inst = await mod.instantiate(
    async (p) => WebAssembly.compile(await fs.readFile(path.join(dir, p))),
    new Proxy(imports, { get: (t, k) => t[String(k).replace(/@.*/, "")] }),
  );
  const driver = inst.driver ?? inst["octopus:adaptor/driver@0.1.0"];
  driver.models = inst.models ?? inst["octopus:adaptor/models@0.1.3"];
  return driver;
}

const config = (spec) => ({
  model: { apiVersion: "devices.edge.cattle.io/v1alpha1", kind: "X" },
  device: { namespace: "default", name: "d", uid: "u" },
  spec: typeof spec === "string" ? spec : JSON.stringify(spec),
  references: [],
});

// Calls fn and returns the adaptor-error it threw as {tag, val}.
function adaptorError(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e.payload, `expected an adaptor-error, got ${e}`);
    return e.payload;
  }
  assert.fail("expected an adaptor-error");
}

const bytes = (s) => Uint8Array.from(Buffer.from(s));
const text = (b) => Buffer.from(b).toString("utf8");

// ------------------------------------------------------------------------------ counter

const counter = await load(counterDir);

test("counter: describe", () => {
  const info = counter.describe();
  assert.equal(info.name, "adaptors.edge.cattle.io/counter");
  assert.equal(info.version, "0.1.0+javascript");
  assert.deepEqual(info.models[0].model, { apiVersion: "devices.edge.cattle.io/v1alpha1", kind: "CounterDevice" });
  assert.deepEqual(info.models[0].resourceFields, []);
});

test("counter: declares its model's schema", () => {
  const [m] = counter.models.describeModels();
  assert.deepEqual(m.model, { apiVersion: "devices.edge.cattle.io/v1alpha1", kind: "CounterDevice" });
  assert.equal(JSON.parse(m.spec).properties.step.type, "integer");
  assert.deepEqual(m.shortNames, ["counter"]);
  assert.ok(m.printerColumns.some((c) => c.jsonPath === ".status.count"));
});

test("counter: spec errors name the field", () => {
  assert.deepEqual(adaptorError(() => counter.configure(config({ step: "2" }))), { tag: "invalid-spec", val: 'step must be an integer, got "2"' });
  assert.deepEqual(adaptorError(() => counter.configure(config({ syncIntervalMs: 9 }))), { tag: "invalid-spec", val: "syncIntervalMs must be >= 10, got 9" });
  assert.equal(adaptorError(() => counter.configure(config("[1]"))).val, "spec must be a JSON object, got an array");
  assert.equal(adaptorError(() => counter.configure(config("{"))).tag, "invalid-spec");
});

test("counter: defaults, poll, snapshot, restore", () => {
  assert.deepEqual(counter.configure(config({ other: true })), { pollIntervalMs: 1000n });
  assert.deepEqual(JSON.parse(counter.poll()), { count: 1, language: "javascript" });
  assert.deepEqual(counter.reconfigure(config({ step: 5, syncIntervalMs: 10 })), { pollIntervalMs: 10n });
  assert.deepEqual(JSON.parse(counter.poll()), { count: 6, language: "javascript" });
  assert.deepEqual(JSON.parse(text(counter.snapshot())), { count: 6 });
  counter.restore(bytes('{"count": -40}'), "0.1.0+rust");
  assert.equal(JSON.parse(counter.poll()).count, -35);
  for (const bad of ['{"count": 1.5}', '{"polls": 3}', "[]", "null", "nope"]) {
    assert.equal(adaptorError(() => counter.restore(bytes(bad), "x")).tag, "incompatible-state", bad);
  }
  assert.equal(adaptorError(() => counter.restore(Uint8Array.of(0xff, 0xfe), "x")).val, "state is not UTF-8");
  assert.equal(JSON.parse(counter.poll()).count, -30, "a refused restore keeps the state");
});

test("counter: poll-interval-ms is a u64 (values past 2^31 and 2^32 survive)", () => {
  assert.deepEqual(counter.configure(config({ syncIntervalMs: 3_000_000_000 })), { pollIntervalMs: 3_000_000_000n });
  assert.deepEqual(counter.configure(config({ syncIntervalMs: 2 ** 40 })), { pollIntervalMs: 2n ** 40n });
});

// ---------------------------------------------------------------------------- registers

const regs = await load(registersDir);
// A reply to read-holding-registers: MBAP + function + byte count + values.
const reply = (tid, unit, values) => [
  tid >> 8, tid & 0xff, 0, 0, 0, 3 + 2 * values.length, unit, 3, 2 * values.length,
  ...values.flatMap((v) => [v >> 8, v & 0xff]),
];
const ok = (tid, values = [53191, 54321], unit = 1) => [reply(tid, unit, values)];

test("registers: describe declares the tcp resource field", () => {
  const info = regs.describe();
  assert.equal(info.name, "adaptors.edge.cattle.io/registers");
  assert.equal(info.version, "0.1.0+javascript");
  assert.deepEqual(info.models[0].resourceFields, [{ path: "endpoint", kind: "tcp" }]);
});

test("registers: spec errors name the field", () => {
  const cases = [
    [{}, "endpoint is required"],
    [{ endpoint: 5 }, "endpoint must be a string, got 5"],
    [{ endpoint: "nohost" }, 'endpoint must be "host:port", got "nohost"'],
    [{ endpoint: "h:1", count: 40 }, "count must be 1..=16, got 40"],
    [{ endpoint: "h:1", count: 0 }, "count must be 1..=16, got 0"],
    [{ endpoint: "h:1", unitId: 256 }, "unitId must be 0..=255, got 256"],
    [{ endpoint: "h:1", address: -1 }, "address must be 0..=65535, got -1"],
    [{ endpoint: "h:1", address: 65535, count: 2 }, "address + count must be <= 65536, got 65537"],
    [{ endpoint: "h:1", syncIntervalMs: 5 }, "syncIntervalMs must be >= 10, got 5"],
    [{ endpoint: "h:1", unitId: true }, "unitId must be an integer, got true"],
  ];
  for (const [spec, msg] of cases) assert.deepEqual(adaptorError(() => regs.configure(config(spec))), { tag: "invalid-spec", val: msg });
  assert.deepEqual(regs.configure(config({ endpoint: "h:1", address: 65535, count: 1 })), { pollIntervalMs: 1000n });
});

test("registers: configure connects nothing; poll connects, reads, keeps the stream", () => {
  assert.deepEqual(regs.configure(config({ endpoint: "127.0.0.1:502", count: 2, syncIntervalMs: 200 })), { pollIntervalMs: 200n });
  assert.equal(net.connects, 0);
  net.script.push(ok(1));
  assert.deepEqual(JSON.parse(regs.poll()), { registers: [53191, 54321], polls: 1, language: "javascript" });
  assert.deepEqual(net.requests.at(-1), [0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2]);
  net.script.push([[0, 2, 0, 0], [0, 7, 1], [3, 4, 0xff], [0xff, 0], [7]]); // in pieces
  assert.deepEqual(JSON.parse(regs.poll()).registers, [65535, 7]);
  assert.equal(net.connects, 1);
  assert.ok(net.timeouts.every((t) => t > 0 && t <= 1000), `timeouts ${net.timeouts}`);
});

test("registers: a Modbus exception is a protocol error and keeps the stream", () => {
  net.script.push([[0, 3, 0, 0, 0, 3, 1, 0x83, 2]]);
  assert.deepEqual(adaptorError(() => regs.poll()), { tag: "protocol", val: "exception 2" });
  net.script.push(ok(3));
  assert.equal(JSON.parse(regs.poll()).polls, 3);
  assert.equal(net.connects, 1);
  assert.equal(net.disposed, 0);
});

test("registers: wrong transaction id, unit, function or byte count: protocol, reconnect", () => {
  const bad = [
    [ok(99), "transaction id 99, expected 4"],
    [[[0, 4, 0, 0, 0, 7, 9, 3, 4, 0, 1, 0, 2]], "unit id 9, expected 1"],
    [[[0, 4, 0, 0, 0, 7, 1, 4, 4, 0, 1, 0, 2]], "function 4, expected 3"],
    [[[0, 4, 0, 0, 0, 5, 1, 3, 2, 0, 1]], "byte count 2, expected 4"],
  ];
  for (const [script, msg] of bad) {
    const before = net.disposed;
    net.script.push(script);
    assert.deepEqual(adaptorError(() => regs.poll()), { tag: "protocol", val: msg });
    assert.equal(net.disposed, before + 1, "the out-of-step stream is dropped");
  }
  net.script.push(ok(4));
  assert.equal(JSON.parse(regs.poll()).polls, 4);
  assert.equal(net.connects, 5);
});

test("registers: timeouts, closed streams and I/O errors are unreachable, then reconnect", () => {
  const cases = [
    [[[0, 5, 0]], "127.0.0.1:502: timed out"], // the rest never comes
    [[[0, 5, 0], []], "connection closed by the server"],
    [() => { throw capErr("io", "Broken pipe (os error 32)"); }, "127.0.0.1:502: Broken pipe (os error 32)"],
    [() => { throw capErr("closed"); }, "127.0.0.1:502: connection closed"],
  ];
  for (const [script, msg] of cases) {
    const before = net.disposed;
    net.script.push(script);
    assert.deepEqual(adaptorError(() => regs.poll()), { tag: "unreachable", val: msg });
    assert.equal(net.disposed, before + 1);
  }
  net.connectError = capErr("io", "Connection refused (os error 111)");
  assert.deepEqual(adaptorError(() => regs.poll()), { tag: "unreachable", val: "connect 127.0.0.1:502: Connection refused (os error 111)" });
  net.connectError = capErr("not-permitted", 'tcp grant "endpoint" is not granted');
  assert.deepEqual(adaptorError(() => regs.poll()), { tag: "not-permitted", val: 'connect 127.0.0.1:502: tcp grant "endpoint" is not granted' });
  net.connectError = null;
  net.script.push(ok(5));
  assert.equal(JSON.parse(regs.poll()).polls, 5);
});

test("registers: reconfigure reconnects only for a new endpoint or unit id", () => {
  const connects = net.connects;
  regs.reconfigure(config({ endpoint: "127.0.0.1:502", count: 1, address: 7, syncIntervalMs: 50 }));
  net.script.push(ok(6, [1]));
  assert.deepEqual(JSON.parse(regs.poll()).registers, [1]);
  assert.deepEqual(net.requests.at(-1), [0, 6, 0, 0, 0, 6, 1, 3, 0, 7, 0, 1]);
  assert.equal(net.connects, connects);
  assert.equal(adaptorError(() => regs.reconfigure(config({ endpoint: "127.0.0.1:502", count: 17 }))).tag, "invalid-spec");
  regs.reconfigure(config({ endpoint: "127.0.0.1:502", unitId: 2, count: 1 }));
  net.script.push(ok(7, [2], 2));
  assert.deepEqual(JSON.parse(regs.poll()).registers, [2]);
  assert.equal(net.connects, connects + 1);
});

test("registers: snapshot and restore share the format; transaction ids wrap", () => {
  assert.deepEqual(JSON.parse(text(regs.snapshot())), { polls: 7 });
  regs.restore(bytes('{"polls": 65535, "from": "go"}'), "0.1.0+go");
  net.script.push(ok(0, [3], 2));
  assert.equal(JSON.parse(regs.poll()).polls, 65536);
  assert.deepEqual(net.requests.at(-1).slice(0, 2), [0, 0]);
  for (const bad of ['{"polls": -1}', '{"polls": 1.5}', '{"polls": "3"}', '{"count": 3}', "[3]", "{}"]) {
    assert.equal(adaptorError(() => regs.restore(bytes(bad), "x")).tag, "incompatible-state", bad);
  }
  assert.equal(JSON.parse(text(regs.snapshot())).polls, 65536);
});

test("registers: shutdown drops the stream", () => {
  const before = net.disposed;
  regs.shutdown();
  assert.equal(net.disposed, before + 1);
});

console.log(failures ? `${failures} test(s) failed` : "all tests passed");
process.exit(failures ? 1 : 0);
