//! adaptors.edge.cattle.io/counter: the smallest complete Octopus adaptor in Zig.
//!
//! Spec: {"step": <integer, default 1>, "syncIntervalMs": <integer >= 10, default 1000>}.
//! Every poll adds `step` to the count. The count survives hot swaps via snapshot/restore.
//!
//! octopus.zig (next to this file) exports the WIT functions and calls the `pub`
//! declarations below; one instance of this module drives exactly one device, so plain
//! globals are the device's state.

const std = @import("std");
const octopus = @import("octopus.zig");

/// Panics are logged through the limb, then trap; the limb re-instantiates.
pub const panic = octopus.panic;

// Makes the compiler analyse octopus.zig, whose `export fn`s the WIT glue calls.
comptime {
    _ = octopus;
}

pub const info: octopus.Info = .{
    .name = "adaptors.edge.cattle.io/counter",
    .version = "0.1.0+zig",
    .models = &.{.{ .api_version = "devices.edge.cattle.io/v1alpha1", .kind = "CounterDevice" }},
};

/// The schemas of the models above (the `models` export, contract 0.1.3): octopus.zig
/// answers `describe-models` from this JSON. build.sh builds for the world
/// `described-adaptor` because this folder has a models.json; delete both to serve the
/// model unchecked.
pub const declared_models = @embedFile("models.json");

const Spec = struct {
    step: i64,
    sync_interval_ms: u64,

    fn parse(arena: std.mem.Allocator, text: []const u8) octopus.Error!Spec {
        const spec = try octopus.Spec.parse(arena, text);
        return .{
            .step = try spec.int(i64, "step", .{ .default = 1 }),
            .sync_interval_ms = try spec.int(u64, "syncIntervalMs", .{ .default = 1000, .min = 10 }),
        };
    }
};

var current: Spec = .{ .step = 1, .sync_interval_ms = 1000 };
var count: i64 = 0;

pub fn configure(config: octopus.Config) octopus.Error!octopus.Settings {
    // Parse everything first: a bad spec leaves the previous one in place.
    current = try Spec.parse(config.arena, config.spec);
    return .{ .poll_interval_ms = current.sync_interval_ms };
}

pub fn reconfigure(config: octopus.Config) octopus.Error!octopus.Settings {
    return configure(config);
}

pub fn poll(arena: std.mem.Allocator) octopus.Error![]const u8 {
    count +%= current.step;
    return octopus.json(arena, .{ .count = count, .language = "zig" });
}

pub fn snapshot(arena: std.mem.Allocator) octopus.Error![]const u8 {
    return octopus.json(arena, .{ .count = count });
}

pub fn restore(arena: std.mem.Allocator, state: []const u8, from_version: []const u8) octopus.Error!void {
    _ = from_version;
    const object = try octopus.parseState(arena, state);
    const value = object.get("count") orelse
        return octopus.fail(.incompatible_state, "state has no count", .{});
    switch (value) {
        .integer => |n| count = n,
        else => return octopus.fail(.incompatible_state, "count must be an integer", .{}),
    }
}

pub fn shutdown() void {}
