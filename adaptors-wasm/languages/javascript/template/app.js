// The counter adaptor: the smallest complete Octopus adaptor in JavaScript. Copy this
// folder to start your own; octopus.js holds the reusable helpers.
//
// Spec: {"step": <integer, default 1>, "syncIntervalMs": <integer >= 10, default 1000>}
// Status: {"count": <n>, "language": "javascript"}. Snapshot: {"count": <n>}.
import {
  LANGUAGE,
  Spec,
  defineDriver,
  defineModels,
  incompatibleState,
  internal,
  isObject,
  log,
} from "./octopus.js";
// models.json, the schema of CounterDevice, made into a module by build.sh.
import declarations from "./models.js";

const NAME = "adaptors.edge.cattle.io/counter";
const VERSION = `0.1.0+${LANGUAGE}`;

// State of this instance: the limb creates one instance per device.
let spec = null; // the parsed spec, once configured
let count = 0;

function parseSpec(config) {
  const s = Spec.parse(config.spec);
  return {
    step: s.integer("step", { default: 1 }),
    syncIntervalMs: s.integer("syncIntervalMs", { default: 1000, min: 10 }),
  };
}

// The WIT export `driver` (interface octopus:adaptor/driver): its name in JS is the
// interface name in camelCase, and its functions are the WIT functions in camelCase.
export const driver = defineDriver({
  describe() {
    return {
      name: NAME,
      version: VERSION,
      models: [
        {
          model: { apiVersion: "devices.edge.cattle.io/v1alpha1", kind: "CounterDevice" },
          resourceFields: [],
        },
      ],
    };
  },

  configure(config) {
    spec = parseSpec(config);
    log.info(`configured: step ${spec.step}, every ${spec.syncIntervalMs} ms`);
    return { pollIntervalMs: spec.syncIntervalMs };
  },

  reconfigure(config) {
    spec = parseSpec(config); // a bad spec throws and keeps the old one
    return { pollIntervalMs: spec.syncIntervalMs };
  },

  poll() {
    if (!spec) throw internal("poll before configure");
    count += spec.step;
    return { count, language: LANGUAGE };
  },

  snapshot() {
    return { count };
  },

  restore(state, fromVersion) {
    if (!isObject(state) || !Number.isSafeInteger(state.count)) {
      throw incompatibleState(`expected {"count": <integer>}, got ${String(JSON.stringify(state)).slice(0, 100)}`);
    }
    count = state.count;
    log.info(`restored count ${count} from ${fromVersion}`);
  },

  shutdown() {},
});

// The WIT export `models`: what the limb checks specs and statuses against and what
// `octopus crd` makes the CounterDevice CRD from. Leave it out (and models.json) to
// build for the plain `adaptor` world instead.
export const models = defineModels(declarations);
