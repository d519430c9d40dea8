//! Octopus adaptor helpers for Zig: copy this file next to your `adaptor.zig`.
//!
//! It turns the C bindings that `wit-bindgen c` generates for the `adaptor` world
//! (imported here as the module `bindings`, see build.sh) into a small Zig API:
//!
//!   * the `models` export (contract 0.1.3): when your root file declares
//!     `pub const declared_models = @embedFile("models.json");`, this file answers
//!     `describe-models` from that JSON (build.sh then builds for `described-adaptor`);
//!   * the `driver` exports: your root file declares `info`, `configure`, `reconfigure`,
//!     `poll`, `snapshot`, `restore` and `shutdown` (see template/adaptor.zig); this file
//!     exports the C functions the bindings call and does all the copying and freeing
//!     that the canonical ABI asks for;
//!   * typed errors: `fail(.invalid_spec, "count must be ...", .{})` maps to the WIT
//!     `adaptor-error` variant of the same name;
//!   * spec parsing with field-named errors (`Spec`), JSON for status and snapshots
//!     (`json`), the socket capability (`TcpStream`), logging and events;
//!   * `malloc`/`free`/`realloc` for the generated C code, on Zig's wasm allocator, so
//!     the component needs no libc and imports nothing but the Octopus interfaces.
//!
//! Nothing here keeps state of its own except the last error message.

const std = @import("std");
const root = @import("root");

/// The raw C bindings (types `c.octopus_adaptor_*`, functions for every import). Use
/// them for capabilities this file does not wrap (serial, gpio, udp).
pub const c = @import("bindings");

/// The allocator for state that lives across calls. Each call also gets an arena
/// (`Config.arena`, the `arena` argument of `poll`/`snapshot`/`restore`) that is freed
/// when the call returns.
pub const gpa = std.heap.wasm_allocator;

// ---------------------------------------------------------------------------------------
// Errors

/// The WIT `adaptor-error` variants.
pub const ErrorKind = enum(u8) {
    invalid_spec = c.OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_INVALID_SPEC,
    not_permitted = c.OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_NOT_PERMITTED,
    @"unreachable" = c.OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_UNREACHABLE,
    protocol = c.OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_PROTOCOL,
    incompatible_state = c.OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_INCOMPATIBLE_STATE,
    internal = c.OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_INTERNAL,
};

/// What the driver functions return on failure. Zig errors carry no payload, so `fail`
/// records the kind and message and returns `error.AdaptorFailed`; `OutOfMemory`
/// becomes `internal`.
pub const Error = error{ AdaptorFailed, OutOfMemory };

var failure_kind: ErrorKind = .internal;
var failure_buf: [512]u8 = undefined;
var failure_len: usize = 0;

/// Records an `adaptor-error` and returns the error to propagate:
/// `return octopus.fail(.invalid_spec, "count must be 1..=16, got {d}", .{n});`
pub fn fail(kind: ErrorKind, comptime fmt: []const u8, args: anytype) error{AdaptorFailed} {
    failure_kind = kind;
    failure_len = (std.fmt.bufPrint(&failure_buf, fmt, args) catch blk: {
        // Too long: keep the part that fits.
        @memcpy(failure_buf[failure_buf.len - 3 ..], "...");
        break :blk @as([]u8, &failure_buf);
    }).len;
    return error.AdaptorFailed;
}

fn writeError(e: Error, out: *c.octopus_adaptor_types_adaptor_error_t) void {
    const kind: ErrorKind, const msg: []const u8 = switch (e) {
        error.AdaptorFailed => .{ failure_kind, failure_buf[0..failure_len] },
        error.OutOfMemory => .{ .internal, "out of memory" },
    };
    out.tag = @backingInt(kind);
    // Every case of the variant carries a string at the same place.
    out.val.internal = dupString(msg);
}

// ---------------------------------------------------------------------------------------
// Describe

pub const ResourceKind = enum(u8) {
    tcp = c.OCTOPUS_ADAPTOR_TYPES_RESOURCE_KIND_TCP,
    udp = c.OCTOPUS_ADAPTOR_TYPES_RESOURCE_KIND_UDP,
    serial = c.OCTOPUS_ADAPTOR_TYPES_RESOURCE_KIND_SERIAL,
    gpio = c.OCTOPUS_ADAPTOR_TYPES_RESOURCE_KIND_GPIO,
};

pub const ResourceField = struct {
    /// Dotted path into the spec, e.g. `endpoint`; also the grant name.
    path: []const u8,
    kind: ResourceKind,
};

pub const Model = struct {
    api_version: []const u8,
    kind: []const u8,
    resource_fields: []const ResourceField = &.{},
};

/// What `describe` returns; declare it as `pub const info: octopus.Info` in the root file.
pub const Info = struct {
    name: []const u8,
    version: []const u8,
    models: []const Model,
};

// ---------------------------------------------------------------------------------------
// Configure

pub const Reference = struct { reference: []const u8, item: []const u8, value: []const u8 };

/// The device configuration handed to `configure`/`reconfigure`. Every slice is freed
/// after the call: copy what you keep (e.g. `gpa.dupe`).
pub const Config = struct {
    /// Freed when the call returns.
    arena: std.mem.Allocator,
    api_version: []const u8,
    kind: []const u8,
    namespace: []const u8,
    name: []const u8,
    uid: []const u8,
    /// The DeviceLink's `template.spec`, a JSON object.
    spec: []const u8,
    references: []const Reference,

    /// The value of one resolved reference, if the DeviceLink has it.
    pub fn reference(self: Config, ref: []const u8, item: []const u8) ?[]const u8 {
        for (self.references) |r| {
            if (std.mem.eql(u8, r.reference, ref) and std.mem.eql(u8, r.item, item)) return r.value;
        }
        return null;
    }
};

/// What `configure`/`reconfigure` return: `null` means never poll.
pub const Settings = struct { poll_interval_ms: ?u64 };

// ---------------------------------------------------------------------------------------
// Spec parsing

/// The spec as a JSON object, with typed getters whose errors name the field.
pub const Spec = struct {
    object: std.json.ObjectMap,

    /// Parses `text`; it must be a JSON object.
    pub fn parse(arena: std.mem.Allocator, text: []const u8) Error!Spec {
        const value = std.json.parseFromSliceLeaky(std.json.Value, arena, text, .{}) catch |e| switch (e) {
            error.OutOfMemory => return error.OutOfMemory,
            else => return fail(.invalid_spec, "spec is not valid JSON ({s})", .{@errorName(e)}),
        };
        return switch (value) {
            .object => |o| .{ .object = o },
            else => fail(.invalid_spec, "spec must be a JSON object, got {s}", .{typeName(value)}),
        };
    }

    /// The raw value of `field`; `null` when it is missing or JSON `null`.
    pub fn get(self: Spec, field: []const u8) ?std.json.Value {
        const v = self.object.get(field) orelse return null;
        return if (v == .null) null else v;
    }

    pub fn IntOptions(comptime T: type) type {
        return struct {
            /// Used when the field is missing; `null` makes the field required.
            default: ?T = null,
            min: T = std.math.minInt(T),
            max: T = std.math.maxInt(T),
        };
    }

    /// An integer field of type `T` within `opts.min..=opts.max` (and T's own range):
    /// `spec.int(u8, "unitId", .{ .default = 1 })`.
    pub fn int(self: Spec, comptime T: type, field: []const u8, opts: IntOptions(T)) Error!T {
        const v = self.get(field) orelse
            return opts.default orelse fail(.invalid_spec, "{s} is required", .{field});
        const n: i128 = switch (v) {
            .integer => |i| i,
            // Integers beyond 64 bits: out of every range we accept.
            .number_string => |s| if (std.json.isNumberFormattedLikeAnInteger(s))
                return rangeError(T, field, opts, s)
            else
                return fail(.invalid_spec, "{s} must be an integer, got {s}", .{ field, s }),
            .float => |f| return fail(.invalid_spec, "{s} must be an integer, got {d}", .{ field, f }),
            else => return fail(.invalid_spec, "{s} must be an integer, got {s}", .{ field, typeName(v) }),
        };
        if (n < opts.min or n > opts.max) {
            var buf: [40]u8 = undefined;
            return rangeError(T, field, opts, std.fmt.bufPrint(&buf, "{d}", .{n}) catch unreachable);
        }
        return @intCast(n);
    }

    fn rangeError(comptime T: type, field: []const u8, opts: IntOptions(T), got: []const u8) error{AdaptorFailed} {
        const unbounded_max = opts.max >= std.math.maxInt(i64);
        const unbounded_min = opts.min <= std.math.minInt(i64);
        if (unbounded_max and unbounded_min) return fail(.invalid_spec, "{s} is out of range, got {s}", .{ field, got });
        if (unbounded_max) return fail(.invalid_spec, "{s} must be >= {d}, got {s}", .{ field, opts.min, got });
        if (unbounded_min) return fail(.invalid_spec, "{s} must be <= {d}, got {s}", .{ field, opts.max, got });
        return fail(.invalid_spec, "{s} must be {d}..={d}, got {s}", .{ field, opts.min, opts.max, got });
    }

    /// A string field; `default == null` makes it required. The result lives in the
    /// call's arena.
    pub fn string(self: Spec, field: []const u8, default: ?[]const u8) Error![]const u8 {
        const v = self.get(field) orelse
            return default orelse fail(.invalid_spec, "{s} is required", .{field});
        return switch (v) {
            .string => |s| s,
            else => fail(.invalid_spec, "{s} must be a string, got {s}", .{ field, typeName(v) }),
        };
    }

    /// A boolean field.
    pub fn boolean(self: Spec, field: []const u8, default: ?bool) Error!bool {
        const v = self.get(field) orelse
            return default orelse fail(.invalid_spec, "{s} is required", .{field});
        return switch (v) {
            .bool => |b| b,
            else => fail(.invalid_spec, "{s} must be true or false, got {s}", .{ field, typeName(v) }),
        };
    }
};

fn typeName(v: std.json.Value) []const u8 {
    return switch (v) {
        .null => "null",
        .bool => "a boolean",
        .integer, .float, .number_string => "a number",
        .string => "a string",
        .array => "an array",
        .object => "an object",
    };
}

// ---------------------------------------------------------------------------------------
// JSON out

/// Serialises any Zig value as JSON: structs (also anonymous ones) become objects,
/// slices arrays. `octopus.json(arena, .{ .count = n, .language = "zig" })`.
pub fn json(arena: std.mem.Allocator, value: anytype) Error![]const u8 {
    return std.json.Stringify.valueAlloc(arena, value, .{});
}

/// Parses a snapshot produced by `json`: a JSON object, or `incompatible-state`.
pub fn parseState(arena: std.mem.Allocator, state: []const u8) Error!std.json.ObjectMap {
    const value = std.json.parseFromSliceLeaky(std.json.Value, arena, state, .{}) catch |e| switch (e) {
        error.OutOfMemory => return error.OutOfMemory,
        else => return fail(.incompatible_state, "state is not JSON ({s})", .{@errorName(e)}),
    };
    return switch (value) {
        .object => |o| o,
        else => fail(.incompatible_state, "state must be a JSON object, got {s}", .{typeName(value)}),
    };
}

// ---------------------------------------------------------------------------------------
// Capabilities

/// The WIT `capability-error` cases.
pub const CapabilityErrorKind = enum(u8) {
    not_permitted = c.OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_NOT_PERMITTED,
    timeout = c.OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_TIMEOUT,
    limit_reached = c.OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_LIMIT_REACHED,
    closed = c.OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_CLOSED,
    io = c.OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_IO,
    invalid_argument = c.OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_INVALID_ARGUMENT,
};

/// A capability call failed; `lastCapabilityError()` says why, `capabilityFail` turns it
/// into an `adaptor-error`.
pub const CapabilityError = error{CapabilityFailed};

var cap_kind: CapabilityErrorKind = .io;
var cap_buf: [256]u8 = undefined;
var cap_len: usize = 0;

pub fn lastCapabilityError() struct { kind: CapabilityErrorKind, message: []const u8 } {
    return .{ .kind = cap_kind, .message = cap_buf[0..cap_len] };
}

/// Takes over (and frees) a capability error the bindings returned.
fn takeCapabilityError(err: *c.octopus_adaptor_types_capability_error_t) CapabilityError {
    cap_kind = @fromBackingInt(@intCast(err.tag));
    const detail: []const u8 = switch (cap_kind) {
        .timeout => "",
        .closed => "",
        else => slice(err.val.io), // not-permitted, limit-reached, io, invalid-argument
    };
    const prefix: []const u8 = switch (cap_kind) {
        .not_permitted => "",
        .timeout => "timed out",
        .limit_reached => "limit reached: ",
        .closed => "connection closed",
        .io => "",
        .invalid_argument => "invalid argument: ",
    };
    cap_len = (std.fmt.bufPrint(&cap_buf, "{s}{s}", .{ prefix, detail }) catch @as([]u8, &cap_buf)).len;
    c.octopus_adaptor_types_capability_error_free(err);
    return error.CapabilityFailed;
}

/// Maps the last capability error to an `adaptor-error`: `not-permitted` stays
/// `not-permitted`, everything else becomes `kind`. The message is
/// "<context>: <capability message>".
pub fn capabilityFail(kind: ErrorKind, context: []const u8) error{AdaptorFailed} {
    const k: ErrorKind = if (cap_kind == .not_permitted) .not_permitted else kind;
    return fail(k, "{s}: {s}", .{ context, cap_buf[0..cap_len] });
}

/// A TCP stream from the socket capability (`socket.connect-tcp`).
pub const TcpStream = struct {
    handle: c.octopus_adaptor_socket_own_tcp_stream_t,

    /// Connects to the endpoint the grant `grant` names (a resource field's path).
    pub fn connect(grant: []const u8, timeout_ms: u32) CapabilityError!TcpStream {
        var g = borrowString(grant);
        var ret: c.octopus_adaptor_socket_own_tcp_stream_t = undefined;
        var err: c.octopus_adaptor_socket_capability_error_t = undefined;
        if (!c.octopus_adaptor_socket_connect_tcp(&g, timeout_ms, &ret, &err)) return takeCapabilityError(&err);
        return .{ .handle = ret };
    }

    /// Writes all of `data`.
    pub fn send(self: TcpStream, data: []const u8, timeout_ms: u32) CapabilityError!u32 {
        var list: c.adaptor_list_u8_t = .{ .ptr = @constCast(data.ptr), .len = data.len };
        var ret: u32 = 0;
        var err: c.octopus_adaptor_socket_capability_error_t = undefined;
        if (!c.octopus_adaptor_socket_method_tcp_stream_send(self.borrow(), &list, timeout_ms, &ret, &err))
            return takeCapabilityError(&err);
        return ret;
    }

    /// Reads up to `buf.len` bytes into `buf`; 0 means the peer closed the stream.
    pub fn receive(self: TcpStream, buf: []u8, timeout_ms: u32) CapabilityError!usize {
        var ret: c.adaptor_list_u8_t = undefined;
        var err: c.octopus_adaptor_socket_capability_error_t = undefined;
        if (!c.octopus_adaptor_socket_method_tcp_stream_receive(self.borrow(), @intCast(buf.len), timeout_ms, &ret, &err))
            return takeCapabilityError(&err);
        defer c.adaptor_list_u8_free(&ret);
        const n = @min(ret.len, buf.len);
        if (n > 0) @memcpy(buf[0..n], ret.ptr[0..n]);
        return n;
    }

    /// Closes the connection.
    pub fn close(self: TcpStream) void {
        c.octopus_adaptor_socket_tcp_stream_drop_own(self.handle);
    }

    fn borrow(self: TcpStream) c.octopus_adaptor_socket_borrow_tcp_stream_t {
        return c.octopus_adaptor_socket_borrow_tcp_stream(self.handle);
    }
};

pub const Level = enum(u8) {
    trace = c.OCTOPUS_ADAPTOR_LOG_LEVEL_TRACE,
    debug = c.OCTOPUS_ADAPTOR_LOG_LEVEL_DEBUG,
    info = c.OCTOPUS_ADAPTOR_LOG_LEVEL_INFO,
    warn = c.OCTOPUS_ADAPTOR_LOG_LEVEL_WARN,
    @"error" = c.OCTOPUS_ADAPTOR_LOG_LEVEL_ERROR,
};

/// One line into the limb's log, tagged with the device. Long lines are cut at 1 KiB.
pub fn log(level: Level, comptime fmt: []const u8, args: anytype) void {
    var buf: [1024]u8 = undefined;
    const msg = std.fmt.bufPrint(&buf, fmt, args) catch @as([]u8, &buf);
    var s = borrowString(msg);
    c.octopus_adaptor_log_log(@backingInt(level), &s);
}

/// Records a Kubernetes event on the DeviceLink (`reason` is one CamelCase word).
pub fn recordEvent(warning: bool, reason: []const u8, message: []const u8) void {
    var r = borrowString(reason);
    var m = borrowString(message);
    const t: u8 = if (warning) c.OCTOPUS_ADAPTOR_EVENTS_EVENT_TYPE_WARNING else c.OCTOPUS_ADAPTOR_EVENTS_EVENT_TYPE_NORMAL;
    c.octopus_adaptor_events_record_event(t, &r, &m);
}

/// Replaces the device's status outside of `poll` (subscriptions).
pub fn reportStatus(status_json: []const u8) void {
    var s = borrowString(status_json);
    c.octopus_adaptor_events_report_status(&s);
}

/// Milliseconds since the Unix epoch, from the host.
pub fn nowMs() u64 {
    return c.octopus_adaptor_clock_now_ms();
}

/// A panic handler that logs the message through the limb, then traps (the limb
/// reports the trap and re-instantiates). Use it in the root file:
/// `pub const panic = octopus.panic;`
pub const panic = std.debug.FullPanic(panicLog);

fn panicLog(msg: []const u8, _: ?usize) noreturn {
    @branchHint(.cold);
    log(.@"error", "panic: {s}", .{msg});
    @trap();
}

// ---------------------------------------------------------------------------------------
// The driver exports, called by the generated C glue (GEN/adaptor.c).

fn slice(s: c.adaptor_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

fn bytes(l: c.adaptor_list_u8_t) []const u8 {
    return if (l.len == 0) "" else l.ptr[0..l.len];
}

/// A string the host only reads during the call (import arguments).
fn borrowString(s: []const u8) c.adaptor_string_t {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}

/// A string handed to the host as a return value: the generated post-return frees it
/// with `free`, so it must come from `malloc`. Empty strings need no memory.
fn dupString(s: []const u8) c.adaptor_string_t {
    if (s.len == 0) return .{ .ptr = null, .len = 0 };
    const p: [*]u8 = @ptrCast(malloc(s.len) orelse @panic("out of memory"));
    @memcpy(p[0..s.len], s);
    return .{ .ptr = p, .len = s.len };
}

fn dupArray(comptime T: type, n: usize) [*c]T {
    if (n == 0) return null;
    return @ptrCast(@alignCast(malloc(@sizeOf(T) * n) orelse @panic("out of memory")));
}

export fn exports_octopus_adaptor_driver_describe(ret: *c.exports_octopus_adaptor_driver_adaptor_info_t) void {
    const info: Info = root.info;
    const models = dupArray(c.octopus_adaptor_types_model_info_t, info.models.len);
    for (info.models, 0..) |m, i| {
        const fields = dupArray(c.octopus_adaptor_types_resource_field_t, m.resource_fields.len);
        for (m.resource_fields, 0..) |f, j| {
            fields[j] = .{ .path = dupString(f.path), .kind = @backingInt(f.kind) };
        }
        models[i] = .{
            .model = .{ .api_version = dupString(m.api_version), .kind = dupString(m.kind) },
            .resource_fields = .{ .ptr = fields, .len = m.resource_fields.len },
        };
    }
    ret.* = .{
        .name = dupString(info.name),
        .version = dupString(info.version),
        .models = .{ .ptr = models, .len = info.models.len },
    };
}

fn callConfigure(
    comptime f: fn (Config) Error!Settings,
    config: *c.exports_octopus_adaptor_driver_device_config_t,
    ret: *c.exports_octopus_adaptor_driver_device_settings_t,
    err: *c.exports_octopus_adaptor_driver_adaptor_error_t,
) bool {
    // The arguments belong to us: free them when done.
    defer c.exports_octopus_adaptor_driver_device_config_free(config);
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    const result = blk: {
        const refs = arena.alloc(Reference, config.references.len) catch |e| break :blk @as(Error!Settings, e);
        for (refs, 0..) |*r, i| {
            const src = config.references.ptr[i];
            r.* = .{ .reference = slice(src.reference), .item = slice(src.item), .value = bytes(src.value) };
        }
        break :blk f(.{
            .arena = arena,
            .api_version = slice(config.model.api_version),
            .kind = slice(config.model.kind),
            .namespace = slice(config.device.namespace_),
            .name = slice(config.device.name),
            .uid = slice(config.device.uid),
            .spec = slice(config.spec),
            .references = refs,
        });
    };
    const settings = result catch |e| {
        writeError(e, err);
        return false;
    };
    ret.* = .{ .poll_interval_ms = .{
        .is_some = settings.poll_interval_ms != null,
        .val = settings.poll_interval_ms orelse 0,
    } };
    return true;
}

export fn exports_octopus_adaptor_driver_configure(
    config: *c.exports_octopus_adaptor_driver_device_config_t,
    ret: *c.exports_octopus_adaptor_driver_device_settings_t,
    err: *c.exports_octopus_adaptor_driver_adaptor_error_t,
) bool {
    return callConfigure(root.configure, config, ret, err);
}

export fn exports_octopus_adaptor_driver_reconfigure(
    config: *c.exports_octopus_adaptor_driver_device_config_t,
    ret: *c.exports_octopus_adaptor_driver_device_settings_t,
    err: *c.exports_octopus_adaptor_driver_adaptor_error_t,
) bool {
    return callConfigure(root.reconfigure, config, ret, err);
}

export fn exports_octopus_adaptor_driver_poll(ret: *c.adaptor_string_t, err: *c.exports_octopus_adaptor_driver_adaptor_error_t) bool {
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    const status = root.poll(arena_state.allocator()) catch |e| {
        writeError(e, err);
        return false;
    };
    ret.* = dupString(status);
    return true;
}

export fn exports_octopus_adaptor_driver_snapshot(ret: *c.adaptor_list_u8_t, err: *c.exports_octopus_adaptor_driver_adaptor_error_t) bool {
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    const state = root.snapshot(arena_state.allocator()) catch |e| {
        writeError(e, err);
        return false;
    };
    const s = dupString(state);
    ret.* = .{ .ptr = s.ptr, .len = s.len };
    return true;
}

export fn exports_octopus_adaptor_driver_restore(
    state: *c.adaptor_list_u8_t,
    from_version: *c.adaptor_string_t,
    err: *c.exports_octopus_adaptor_driver_adaptor_error_t,
) bool {
    defer c.adaptor_list_u8_free(state);
    defer c.adaptor_string_free(from_version);
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    root.restore(arena_state.allocator(), bytes(state.*), slice(from_version.*)) catch |e| {
        writeError(e, err);
        return false;
    };
    return true;
}

export fn exports_octopus_adaptor_driver_shutdown() void {
    root.shutdown();
}

// ---------------------------------------------------------------------------------------
// Declared models (contract 0.1.3, world `described-adaptor`)

// Exported only when the root declares its models: the types exist only in the
// `described-adaptor` bindings, which build.sh generates for a folder with models.json.
comptime {
    if (@hasDecl(root, "declared_models")) {
        @export(&describeModels, .{ .name = "exports_octopus_adaptor_models_describe_models" });
    }
}

/// `describe-models` from `root.declared_models`: the text of models.json, one
/// declaration or a list of them, in the format of crds/generated/models/*.json. A
/// malformed file panics (build.sh has checked it is JSON; `octopus inspect` shows the rest).
fn describeModels(ret: *c.exports_octopus_adaptor_models_list_model_schema_t) callconv(.c) void {
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    // Numbers stay as written (10.0, not 1e1) when the schemas are written back out.
    const parsed = std.json.parseFromSliceLeaky(std.json.Value, arena, root.declared_models, .{ .parse_numbers = false }) catch |e|
        std.debug.panic("models.json: {s}", .{@errorName(e)});
    var one = [1]std.json.Value{parsed};
    const decls: []const std.json.Value = switch (parsed) {
        .array => |a| a.items,
        else => one[0..],
    };
    const out = dupArray(c.exports_octopus_adaptor_models_model_schema_t, decls.len);
    for (decls, 0..) |d, i| {
        const columns = member(d, "printerColumns");
        const n = if (columns) |v| v.array.items.len else 0;
        const cols = dupArray(c.exports_octopus_adaptor_models_printer_column_t, n);
        for (0..n) |j| {
            const col = columns.?.array.items[j];
            cols[j] = .{
                .name = dupString(member(col, "name").?.string),
                .json_path = dupString(member(col, "jsonPath").?.string),
                .type = dupString(member(col, "type").?.string),
                .format = optionString(member(col, "format")),
                .description = optionString(member(col, "description")),
                .priority = if (member(col, "priority")) |p| std.fmt.parseInt(i32, p.number_string, 10) catch
                    std.debug.panic("models.json: priority {s}", .{p.number_string}) else 0,
            };
        }
        out[i] = .{
            .model = .{
                .api_version = dupString(member(d, "apiVersion").?.string),
                .kind = dupString(member(d, "kind").?.string),
            },
            .description = dupString(if (member(d, "description")) |v| v.string else ""),
            .spec = dupString(schemaText(arena, member(d, "spec").?)),
            .status = dupString(if (member(d, "status")) |v| schemaText(arena, v) else ""),
            .short_names = stringList(member(d, "shortNames")),
            .categories = stringList(member(d, "categories")),
            .printer_columns = .{ .ptr = cols, .len = n },
        };
    }
    ret.* = .{ .ptr = out, .len = decls.len };
}

/// An object's member; absent and null are both null.
fn member(v: std.json.Value, name: []const u8) ?std.json.Value {
    const m = v.object.get(name) orelse return null;
    return if (m == .null) null else m;
}

fn schemaText(arena: std.mem.Allocator, v: std.json.Value) []const u8 {
    return std.json.Stringify.valueAlloc(arena, v, .{}) catch @panic("out of memory");
}

fn optionString(v: ?std.json.Value) c.adaptor_option_string_t {
    const s = v orelse return .{ .is_some = false, .val = .{ .ptr = null, .len = 0 } };
    return .{ .is_some = true, .val = dupString(s.string) };
}

fn stringList(v: ?std.json.Value) c.adaptor_list_string_t {
    const items = if (v) |l| l.array.items else &[_]std.json.Value{};
    const list = dupArray(c.adaptor_string_t, items.len);
    for (items, 0..) |item, i| list[i] = dupString(item.string);
    return .{ .ptr = list, .len = items.len };
}

// ---------------------------------------------------------------------------------------
// The little libc the generated C code needs (it is compiled against wasi-libc's headers
// but linked without libc). Each block carries its size in an 8-byte header, because
// `free` gets no size and Zig allocators want one.

const header = 8;

export fn malloc(size: usize) ?*anyopaque {
    const block = gpa.alignedAlloc(u8, .fromByteUnits(header), header + size) catch return null;
    std.mem.bytesAsValue(usize, block[0..@sizeOf(usize)]).* = size;
    return block.ptr + header;
}

export fn free(ptr: ?*anyopaque) void {
    const p = ptr orelse return;
    const block: [*]align(header) u8 = @alignCast(@as([*]u8, @ptrCast(p)) - header);
    const size = std.mem.bytesAsValue(usize, block[0..@sizeOf(usize)]).*;
    gpa.free(block[0 .. header + size]);
}

export fn realloc(ptr: ?*anyopaque, size: usize) ?*anyopaque {
    const old = ptr orelse return malloc(size);
    const old_block: [*]u8 = @as([*]u8, @ptrCast(old)) - header;
    const old_size = std.mem.bytesAsValue(usize, old_block[0..@sizeOf(usize)]).*;
    const new = malloc(size) orelse return null;
    const n = @min(old_size, size);
    @memcpy(@as([*]u8, @ptrCast(new))[0..n], @as([*]const u8, @ptrCast(old))[0..n]);
    free(old);
    return new;
}

export fn abort() noreturn {
    @panic("abort() called by the generated bindings (out of memory?)");
}

export fn strlen(s: [*:0]const u8) usize {
    return std.mem.len(s);
}
