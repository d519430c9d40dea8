// The registers adaptor: reads Modbus TCP holding registers through the limb's socket
// capability. Built from the counter template; build.sh adds the template's octopus.js.
//
// Spec: {"endpoint": "host:port", "unitId": 1, "address": 0, "count": 1, "syncIntervalMs": 1000}
// Status: {"registers": [<u16>, ...], "polls": <n>, "language": "javascript"}.
// Snapshot: {"polls": <n>}, the same in every language's build.
import clock from "octopus:adaptor/clock@0.1.3";
import socket from "octopus:adaptor/socket@0.1.3";
import {
  LANGUAGE,
  Spec,
  defineDriver,
  fromCapability,
  fromU32,
  incompatibleState,
  internal,
  invalidSpec,
  isCapabilityError,
  capabilityMessage,
  isObject,
  log,
  protocol,
  unreachable,
} from "./octopus.js";

const NAME = "adaptors.edge.cattle.io/registers";
const VERSION = `0.1.0+${LANGUAGE}`;
const GRANT = "endpoint"; // the resource field below: the limb grants exactly that endpoint
const TIMEOUT_MS = 1000;
const READ_HOLDING_REGISTERS = 0x03;

let spec = null; // the parsed spec, once configured
let stream = null; // the open socket.TcpStream, or null
let polls = 0; // successful polls, carried across hot swaps

function parseSpec(config) {
  const s = Spec.parse(config.spec);
  const endpoint = s.string("endpoint", { required: true });
  const port = /^.+:(\d{1,5})$/.exec(endpoint);
  if (!port || +port[1] < 1 || +port[1] > 65535) {
    throw invalidSpec(`endpoint must be "host:port", got ${JSON.stringify(endpoint)}`);
  }
  const unitId = s.integer("unitId", { default: 1, min: 0, max: 255 });
  const address = s.integer("address", { default: 0, min: 0, max: 65535 });
  const count = s.integer("count", { default: 1, min: 1, max: 16 });
  if (address + count > 65536) {
    throw invalidSpec(`address + count must be <= 65536, got ${address + count}`);
  }
  const syncIntervalMs = s.integer("syncIntervalMs", { default: 1000, min: 10 });
  return { endpoint, unitId, address, count, syncIntervalMs };
}

function disconnect() {
  if (stream) {
    stream[Symbol.dispose](); // closes the connection now, not at garbage collection
    stream = null;
  }
}

function connect() {
  try {
    stream = socket.connectTcp(GRANT, TIMEOUT_MS);
  } catch (e) {
    throw fromCapability(e, `connect ${spec.endpoint}`); // not-permitted stays not-permitted
  }
  log.info(`connected to ${spec.endpoint}`);
}

const monotonicMs = () => clock.monotonicNs() / 1e6;

// Reads exactly `n` bytes before `deadline` (monotonic ms), over as many receives as it takes.
function receiveExactly(n, deadline) {
  const buf = new Uint8Array(n);
  let have = 0;
  while (have < n) {
    const left = Math.ceil(deadline - monotonicMs());
    if (left <= 0) throw unreachable(`no complete reply within ${TIMEOUT_MS} ms`);
    const chunk = stream.receive(n - have, Math.min(left, TIMEOUT_MS));
    if (chunk.length === 0) throw unreachable("connection closed by the server");
    buf.set(chunk.subarray(0, n - have), have);
    have += chunk.length;
  }
  return buf;
}

// One request/response. Returns {registers} or {exception: code}; throws on anything else.
function readHoldingRegisters(tid) {
  const { unitId, address, count } = spec;
  // MBAP header (transaction id, protocol 0, length 6, unit id), then the PDU.
  const request = Uint8Array.of(
    tid >> 8, tid & 0xff, 0, 0, 0, 6, unitId,
    READ_HOLDING_REGISTERS, address >> 8, address & 0xff, count >> 8, count & 0xff,
  );
  const sent = fromU32(stream.send(request, TIMEOUT_MS)); // u32 from the host: see octopus.js
  if (sent !== request.length) throw unreachable(`sent ${sent} of ${request.length} bytes`);

  const deadline = monotonicMs() + TIMEOUT_MS;
  // MBAP (7) + function + byte count or exception code.
  const head = receiveExactly(9, deadline);
  const gotTid = (head[0] << 8) | head[1];
  if (gotTid !== tid) throw protocol(`transaction id ${gotTid}, expected ${tid}`);
  if (head[6] !== unitId) throw protocol(`unit id ${head[6]}, expected ${unitId}`);
  if (head[7] === (READ_HOLDING_REGISTERS | 0x80)) return { exception: head[8] };
  if (head[7] !== READ_HOLDING_REGISTERS) throw protocol(`function ${head[7]}, expected 3`);
  if (head[8] !== 2 * count) throw protocol(`byte count ${head[8]}, expected ${2 * count}`);

  const data = receiveExactly(2 * count, deadline);
  const registers = [];
  for (let i = 0; i < count; i++) registers.push((data[2 * i] << 8) | data[2 * i + 1]);
  return { registers };
}

export const driver = defineDriver({
  describe() {
    return {
      name: NAME,
      version: VERSION,
      models: [
        {
          model: { apiVersion: "devices.edge.cattle.io/v1alpha1", kind: "RegisterDevice" },
          resourceFields: [{ path: "endpoint", kind: "tcp" }],
        },
      ],
    };
  },

  configure(config) {
    const next = parseSpec(config); // nothing is connected here: poll connects
    disconnect();
    spec = next;
    return { pollIntervalMs: spec.syncIntervalMs };
  },

  reconfigure(config) {
    const next = parseSpec(config); // a bad spec throws and keeps the old one
    if (spec && (next.endpoint !== spec.endpoint || next.unitId !== spec.unitId)) disconnect();
    spec = next;
    return { pollIntervalMs: spec.syncIntervalMs };
  },

  poll() {
    if (!spec) throw internal("poll before configure");
    if (!stream) connect();
    const tid = (polls + 1) % 65536;
    let reply;
    try {
      reply = readHoldingRegisters(tid);
    } catch (e) {
      // Timeouts, I/O errors, a closed or out-of-step stream: reconnect on the next poll.
      disconnect();
      if (isCapabilityError(e)) throw unreachable(`${spec.endpoint}: ${capabilityMessage(e)}`);
      throw e;
    }
    if (reply.exception !== undefined) throw protocol(`exception ${reply.exception}`);
    polls += 1;
    return { registers: reply.registers, polls, language: LANGUAGE };
  },

  snapshot() {
    return { polls };
  },

  restore(state, fromVersion) {
    if (!isObject(state) || !Number.isSafeInteger(state.polls) || state.polls < 0) {
      throw incompatibleState(
        `expected {"polls": <non-negative integer>}, got ${String(JSON.stringify(state)).slice(0, 100)}`,
      );
    }
    polls = state.polls;
    log.info(`restored polls ${polls} from ${fromVersion}`);
  },

  shutdown() {
    disconnect();
  },
});
