// Helpers for Octopus adaptors written in JavaScript (componentize-qjs / QuickJS).
//
// Copy this file next to your app.js; it has no dependencies besides the limb's `log`
// import. It gives you:
//   - defineDriver(impl): the `driver` export, with every error mapped to a WIT
//     `adaptor-error`, poll status objects turned into JSON, snapshots into UTF-8 JSON;
//   - AdaptorError and one factory per WIT case (invalidSpec, unreachable, ...);
//   - capability errors (what socket/serial/gpio calls throw) read and mapped;
//   - Spec: spec parsing whose errors name the field ("count must be 1..=16, got 40");
//   - toU32/fromU32 for WIT u32 values >= 2^31 (see "WIT numbers");
//   - log.info(...) etc., and `console.*` routed to the limb's log (console output
//     would otherwise trap: the component is built with --stub-wasi).
import logImport from "octopus:adaptor/log@0.1.3";

export const LANGUAGE = "javascript";

// ---------------------------------------------------------------------------- logging

function text(args) {
  return args
    .map((a) => (typeof a === "string" ? a : a instanceof Error ? errorText(a) : safeJson(a)))
    .join(" ");
}

function safeJson(v) {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Writes to the limb's log (tagged with the device); arguments are joined like console.log. */
export const log = {
  trace: (...a) => logImport.log("trace", text(a)),
  debug: (...a) => logImport.log("debug", text(a)),
  info: (...a) => logImport.log("info", text(a)),
  warn: (...a) => logImport.log("warn", text(a)),
  error: (...a) => logImport.log("error", text(a)),
};

// QuickJS's console writes to WASI stdout, which --stub-wasi turns into a trap.
globalThis.console = {
  log: log.info,
  info: log.info,
  debug: log.debug,
  trace: log.trace,
  warn: log.warn,
  error: log.error,
};

// ----------------------------------------------------------------------------- errors

/**
 * An error the limb sees as one case of the WIT `adaptor-error` variant. componentize-qjs
 * lowers a thrown value by its `payload` ({tag, val}); anything else thrown traps.
 */
export class AdaptorError extends Error {
  constructor(tag, message) {
    super(message);
    this.name = "AdaptorError";
    this.tag = tag;
    this.payload = { tag, val: message };
  }
}

/** The spec is wrong; retrying will not help until it changes. */
export const invalidSpec = (msg) => new AdaptorError("invalid-spec", msg);
/** A capability was refused (not granted, or denied by the node's policy). */
export const notPermitted = (msg) => new AdaptorError("not-permitted", msg);
/** The device did not answer or could not be reached; the limb retries. */
export const unreachable = (msg) => new AdaptorError("unreachable", msg);
/** The device answered with something unusable. */
export const protocol = (msg) => new AdaptorError("protocol", msg);
/** `restore` got state it cannot take over. */
export const incompatibleState = (msg) => new AdaptorError("incompatible-state", msg);
/** Anything else. */
export const internal = (msg) => new AdaptorError("internal", msg);

/**
 * Whether `e` is what a capability call (socket, serial, gpio) threw: an Error whose
 * `payload` is the WIT `capability-error` ({tag: "timeout"}, {tag: "io", val: "..."}, ...).
 */
export function isCapabilityError(e) {
  return (
    e instanceof Error &&
    !(e instanceof AdaptorError) &&
    e.payload != null &&
    typeof e.payload.tag === "string"
  );
}

/** A human-readable message for a capability error. */
export function capabilityMessage(e) {
  const { tag, val } = e.payload;
  switch (tag) {
    case "timeout":
      return "timed out";
    case "closed":
      return "connection closed";
    case "limit-reached":
      return `handle limit reached: ${val}`;
    case "invalid-argument":
      return `invalid argument: ${val}`;
    default: // not-permitted, io
      return String(val);
  }
}

/**
 * Maps a capability error to an AdaptorError: `not-permitted` stays `not-permitted`,
 * everything else becomes `fallback` (default `unreachable`). `context` prefixes the
 * message, e.g. "connect 10.0.0.5:502".
 */
export function fromCapability(e, context, fallback = "unreachable") {
  if (!isCapabilityError(e)) return toAdaptorError(e);
  const msg = context ? `${context}: ${capabilityMessage(e)}` : capabilityMessage(e);
  return new AdaptorError(e.payload.tag === "not-permitted" ? "not-permitted" : fallback, msg);
}

function errorText(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return safeJson(e);
}

/** Any thrown value as an AdaptorError (bugs become `internal`, logged with their stack). */
export function toAdaptorError(e) {
  if (e instanceof AdaptorError) return e;
  if (isCapabilityError(e)) return fromCapability(e);
  log.error("unexpected error:", errorText(e), (e && e.stack) || "");
  return internal(errorText(e));
}

// ----------------------------------------------------------------------- spec parsing

function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function shown(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return JSON.stringify(v);
}

/**
 * Reads fields of a JSON object with errors that name the field. Missing (or null)
 * fields take their default; other fields in the object are ignored.
 *
 *   const s = Spec.parse(config.spec);
 *   const count = s.integer("count", { default: 1, min: 1, max: 16 });
 */
export class Spec {
  constructor(obj, path = "") {
    this.obj = obj;
    this.path = path;
  }

  /** Parses the DeviceLink's `template.spec` (a JSON object as text). */
  static parse(json) {
    let v;
    try {
      v = JSON.parse(json);
    } catch (e) {
      throw invalidSpec(`spec is not valid JSON: ${e.message}`);
    }
    if (!isObject(v)) throw invalidSpec(`spec must be a JSON object, got ${shown(v)}`);
    return new Spec(v);
  }

  name(field) {
    return this.path ? `${this.path}.${field}` : field;
  }

  raw(field, opts) {
    const v = this.obj[field];
    if (v !== undefined && v !== null) return v;
    if (opts.default !== undefined) return undefined;
    if (opts.required) throw invalidSpec(`${this.name(field)} is required`);
    return undefined;
  }

  /** An integer; opts: default, required, min, max (inclusive). */
  integer(field, opts = {}) {
    const v = this.raw(field, opts);
    if (v === undefined) return opts.default;
    const name = this.name(field);
    if (typeof v !== "number" || !Number.isSafeInteger(v)) {
      throw invalidSpec(`${name} must be an integer, got ${shown(v)}`);
    }
    const { min, max } = opts;
    if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
      const range =
        min !== undefined && max !== undefined
          ? `${min}..=${max}`
          : min !== undefined
            ? `>= ${min}`
            : `<= ${max}`;
      throw invalidSpec(`${name} must be ${range}, got ${v}`);
    }
    return v;
  }

  /** A string; opts: default, required, nonEmpty. */
  string(field, opts = {}) {
    const v = this.raw(field, opts);
    if (v === undefined) return opts.default;
    const name = this.name(field);
    if (typeof v !== "string") throw invalidSpec(`${name} must be a string, got ${shown(v)}`);
    if (opts.nonEmpty && v === "") throw invalidSpec(`${name} must not be empty`);
    return v;
  }

  /** A boolean; opts: default, required. */
  boolean(field, opts = {}) {
    const v = this.raw(field, opts);
    if (v === undefined) return opts.default;
    if (typeof v !== "boolean") {
      throw invalidSpec(`${this.name(field)} must be a boolean, got ${shown(v)}`);
    }
    return v;
  }

  /** A nested object, read with the same rules (errors say "protocol.tcp.port ..."). */
  object(field, opts = {}) {
    const v = this.raw(field, { ...opts, default: opts.required ? undefined : {} });
    const name = this.name(field);
    if (v === undefined) return new Spec({}, name);
    if (!isObject(v)) throw invalidSpec(`${name} must be an object, got ${shown(v)}`);
    return new Spec(v, name);
  }
}

// ------------------------------------------------------------------------ WIT numbers
//
// componentize-qjs 0.4.5 moves WIT u32 values through a signed 32-bit slot: a number
// >= 2^31 that you pass to the host (an argument of an import, a u32 you return) arrives
// as 2147483647, and a u32 >= 2^31 the host gives you arrives negative. u64 values are
// plain numbers, exact up to 2^53 (monotonic-ns loses nanoseconds after ~104 days).

/** A u32 you pass to the host: `toU32(3000000000)` arrives as 3000000000. */
export const toU32 = (n) => n | 0;
/** A u32 the host gave you, as the non-negative number it is. */
export const fromU32 = (n) => n >>> 0;

// ------------------------------------------------------------------------- state, JSON

/** UTF-8 bytes of a string (QuickJS here has no TextEncoder). */
export function utf8Encode(s) {
  const esc = encodeURIComponent(s); // throws URIError on lone surrogates
  const out = [];
  for (let i = 0; i < esc.length; i++) {
    if (esc[i] === "%") {
      out.push(parseInt(esc.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(esc.charCodeAt(i));
    }
  }
  return Uint8Array.from(out);
}

/** A string from UTF-8 bytes; throws URIError on invalid UTF-8 (no TextDecoder either). */
export function utf8Decode(bytes) {
  let esc = "";
  for (const b of bytes) esc += (b < 16 ? "%0" : "%") + b.toString(16);
  return decodeURIComponent(esc);
}

/** JSON of a value as UTF-8 bytes (what `snapshot` returns). */
export function encodeJson(value) {
  return utf8Encode(JSON.stringify(value));
}

/** Parses snapshot bytes; anything but UTF-8 JSON is `incompatible-state`. */
export function decodeJson(bytes) {
  let s;
  try {
    s = utf8Decode(bytes);
  } catch {
    throw incompatibleState("state is not UTF-8");
  }
  try {
    return JSON.parse(s);
  } catch (e) {
    throw incompatibleState(`state is not JSON: ${e.message}`);
  }
}

export { isObject }; // whether a value is a JSON object (not null, not an array)

// ----------------------------------------------------------------------------- driver

function runGuarded(what, fn) {
  try {
    return fn();
  } catch (e) {
    const err = toAdaptorError(e);
    log.debug(`${what} failed: ${err.tag}: ${err.message}`);
    throw err;
  }
}

function settings(s) {
  const ms = s == null ? undefined : s.pollIntervalMs;
  if (ms === null) return { pollIntervalMs: null }; // never poll (push-only device)
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw internal(`configure must return {pollIntervalMs: <integer ms> | null}, got ${safeJson(s)}`);
  }
  return { pollIntervalMs: ms };
}

function statusJson(status) {
  if (typeof status === "string") return status; // already JSON
  if (!isObject(status)) throw internal(`poll must return a status object, got ${shown(status)}`);
  return JSON.stringify(status);
}

/**
 * Builds the WIT `driver` export from an object with the same methods, but friendlier:
 *   describe()                        -> adaptor-info (plain object)
 *   configure(config) / reconfigure(config) -> {pollIntervalMs: ms | null}
 *   poll()                            -> a status object (turned into JSON)
 *   snapshot()                        -> any JSON value (turned into UTF-8 JSON bytes)
 *   restore(state, fromVersion)       -> state is the parsed JSON; undefined
 *   shutdown()
 * Throw AdaptorError (invalidSpec(...), unreachable(...), ...) to fail a call; capability
 * errors and bugs are mapped too (see toAdaptorError), so nothing escapes as a trap.
 */
/**
 * The `models` export (contract 0.1.3, world `described-adaptor`) from the declarations
 * in your folder's models.json (build.sh turns it into `models.js`): the schema of each
 * model's spec and status, its printer columns and short names. The limb checks every
 * spec and status against it, and `octopus crd` makes the model's CRD from it. One
 * declaration, or a list of them for an adaptor serving several models.
 */
export function defineModels(declarations) {
  const list = Array.isArray(declarations) ? declarations : [declarations];
  const text = (v) => (v === undefined || v === null ? "" : JSON.stringify(v));
  return {
    describeModels: () =>
      list.map((d) => ({
        model: { apiVersion: d.apiVersion, kind: d.kind },
        description: d.description ?? "",
        spec: text(d.spec),
        status: text(d.status),
        shortNames: d.shortNames ?? [],
        categories: d.categories ?? [],
        printerColumns: (d.printerColumns ?? []).map((c) => ({
          name: c.name,
          jsonPath: c.jsonPath,
          type: c.type,
          format: c.format ?? undefined,
          description: c.description ?? undefined,
          priority: c.priority ?? 0,
        })),
      })),
  };
}

export function defineDriver(impl) {
  return {
    describe: () => impl.describe(),
    configure: (config) => runGuarded("configure", () => settings(impl.configure(config))),
    reconfigure: (config) =>
      runGuarded("reconfigure", () =>
        settings(impl.reconfigure ? impl.reconfigure(config) : impl.configure(config)),
      ),
    poll: () => runGuarded("poll", () => statusJson(impl.poll())),
    snapshot: () => runGuarded("snapshot", () => encodeJson(impl.snapshot())),
    restore: (state, fromVersion) =>
      runGuarded("restore", () => {
        impl.restore(decodeJson(state), fromVersion);
      }),
    shutdown: () => {
      try {
        if (impl.shutdown) impl.shutdown();
      } catch (e) {
        log.warn(`shutdown failed: ${errorText(e)}`);
      }
    },
  };
}
