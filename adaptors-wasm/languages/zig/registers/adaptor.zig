//! adaptors.edge.cattle.io/registers: reads Modbus TCP holding registers through the
//! limb's socket capability. Built from template/ (build.sh adds its octopus.zig).
//!
//! Spec: {"endpoint": "host:port", "unitId": 1, "address": 0, "count": 1,
//!        "syncIntervalMs": 1000}
//! Status: {"registers": [<u16>, ...], "polls": <n>, "language": "zig"}
//! Snapshot: {"polls": <n>}, the format every language's build shares.

const std = @import("std");
const octopus = @import("octopus.zig");

pub const panic = octopus.panic;

comptime {
    _ = octopus;
}

/// The spec field that names the Modbus server; the limb grants exactly that endpoint,
/// under this name.
const endpoint_field = "endpoint";
const timeout_ms = 1000;
const max_count = 16;

pub const info: octopus.Info = .{
    .name = "adaptors.edge.cattle.io/registers",
    .version = "0.1.0+zig",
    .models = &.{.{
        .api_version = "devices.edge.cattle.io/v1alpha1",
        .kind = "RegisterDevice",
        .resource_fields = &.{.{ .path = endpoint_field, .kind = .tcp }},
    }},
};

const Spec = struct {
    /// Owned by `gpa` once stored in `current`.
    endpoint: []const u8,
    unit_id: u8,
    address: u16,
    count: u16,
    sync_interval_ms: u64,

    fn parse(arena: std.mem.Allocator, text: []const u8) octopus.Error!Spec {
        const spec = try octopus.Spec.parse(arena, text);
        const s: Spec = .{
            .endpoint = try spec.string("endpoint", null),
            .unit_id = try spec.int(u8, "unitId", .{ .default = 1 }),
            .address = try spec.int(u16, "address", .{ .default = 0 }),
            .count = try spec.int(u16, "count", .{ .default = 1, .min = 1, .max = max_count }),
            .sync_interval_ms = try spec.int(u64, "syncIntervalMs", .{ .default = 1000, .min = 10 }),
        };
        if (s.endpoint.len == 0) return octopus.fail(.invalid_spec, "endpoint must not be empty", .{});
        if (@as(u32, s.address) + s.count > 65536)
            return octopus.fail(.invalid_spec, "address + count must be <= 65536, got {d}", .{@as(u32, s.address) + s.count});
        return s;
    }
};

var current: ?Spec = null;
var stream: ?octopus.TcpStream = null;
var polls: u64 = 0;

fn disconnect() void {
    if (stream) |s| s.close();
    stream = null;
}

pub fn configure(config: octopus.Config) octopus.Error!octopus.Settings {
    var next = try Spec.parse(config.arena, config.spec);
    next.endpoint = try octopus.gpa.dupe(u8, next.endpoint);
    if (current) |old| {
        // Reconnect only when the device's address changed.
        if (!std.mem.eql(u8, old.endpoint, next.endpoint) or old.unit_id != next.unit_id) disconnect();
        octopus.gpa.free(old.endpoint);
    }
    current = next;
    return .{ .poll_interval_ms = next.sync_interval_ms };
}

pub fn reconfigure(config: octopus.Config) octopus.Error!octopus.Settings {
    return configure(config);
}

pub fn poll(arena: std.mem.Allocator) octopus.Error![]const u8 {
    const spec = current orelse return octopus.fail(.internal, "poll before configure", .{});
    const s = stream orelse blk: {
        const s = octopus.TcpStream.connect(endpoint_field, timeout_ms) catch
            return octopus.capabilityFail(.@"unreachable", "connect");
        stream = s;
        break :blk s;
    };

    // Read holding registers (function 3), Modbus TCP framing, big-endian.
    const tid: u16 = @truncate(polls +% 1);
    var request: [12]u8 = undefined;
    std.mem.writeInt(u16, request[0..2], tid, .big);
    std.mem.writeInt(u16, request[2..4], 0, .big); // protocol id
    std.mem.writeInt(u16, request[4..6], 6, .big); // bytes that follow
    request[6] = spec.unit_id;
    request[7] = 3;
    std.mem.writeInt(u16, request[8..10], spec.address, .big);
    std.mem.writeInt(u16, request[10..12], spec.count, .big);
    _ = s.send(&request, timeout_ms) catch {
        disconnect();
        return octopus.capabilityFail(.@"unreachable", "send");
    };

    // Header + function + byte count (an exception reply ends after its code, byte 9).
    var reply: [9 + 2 * max_count]u8 = undefined;
    try receiveExactly(s, reply[0..9]);
    if (std.mem.readInt(u16, reply[0..2], .big) != tid or std.mem.readInt(u16, reply[2..4], .big) != 0) {
        disconnect(); // out of step with the server: start afresh
        return octopus.fail(.protocol, "reply has transaction {d}, protocol {d}; expected {d}, 0", .{
            std.mem.readInt(u16, reply[0..2], .big), std.mem.readInt(u16, reply[2..4], .big), tid,
        });
    }
    if (reply[6] != spec.unit_id) {
        disconnect();
        return octopus.fail(.protocol, "reply from unit {d}, expected {d}", .{ reply[6], spec.unit_id });
    }
    if (reply[7] == 0x83) return octopus.fail(.protocol, "exception {d}", .{reply[8]});
    if (reply[7] != 3) {
        disconnect();
        return octopus.fail(.protocol, "reply has function {d}, expected 3", .{reply[7]});
    }
    if (reply[8] != 2 * spec.count) {
        disconnect();
        return octopus.fail(.protocol, "reply has {d} data bytes, expected {d}", .{ reply[8], 2 * spec.count });
    }
    const data = reply[9 .. 9 + 2 * @as(usize, spec.count)];
    try receiveExactly(s, data);

    var registers: [max_count]u16 = undefined;
    for (registers[0..spec.count], 0..) |*r, i| r.* = std.mem.readInt(u16, data[2 * i ..][0..2], .big);
    polls += 1;
    return octopus.json(arena, .{ .registers = registers[0..spec.count], .polls = polls, .language = "zig" });
}

/// Fills `buf` from the stream; any failure drops the connection and is `unreachable`.
fn receiveExactly(s: octopus.TcpStream, buf: []u8) octopus.Error!void {
    var got: usize = 0;
    while (got < buf.len) {
        const n = s.receive(buf[got..], timeout_ms) catch {
            disconnect();
            return octopus.capabilityFail(.@"unreachable", "receive");
        };
        if (n == 0) {
            disconnect();
            return octopus.fail(.@"unreachable", "receive: the server closed the connection", .{});
        }
        got += n;
    }
}

pub fn snapshot(arena: std.mem.Allocator) octopus.Error![]const u8 {
    return octopus.json(arena, .{ .polls = polls });
}

pub fn restore(arena: std.mem.Allocator, state: []const u8, from_version: []const u8) octopus.Error!void {
    const object = try octopus.parseState(arena, state);
    const value = object.get("polls") orelse
        return octopus.fail(.incompatible_state, "state from {s} has no polls", .{from_version});
    switch (value) {
        .integer => |n| if (n >= 0) {
            polls = @intCast(n);
            return;
        },
        else => {},
    }
    return octopus.fail(.incompatible_state, "polls must be a non-negative integer (state from {s})", .{from_version});
}

pub fn shutdown() void {
    disconnect();
}
