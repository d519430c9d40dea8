/*
 * The registers adaptor (adaptors.edge.cattle.io/registers), built from the counter
 * template: reads Modbus TCP holding registers through the limb's socket capability.
 *
 * Spec: endpoint ("host:port", required), unitId (0..=255, 1), address (0..=65535, 0),
 * count (1..=16, 1, address + count <= 65536), syncIntervalMs (>= 10, 1000).
 * Status: {"registers": [...], "polls": N, "language": "c"}; snapshot: {"polls": N}, the
 * format every language's build of this adaptor shares.
 */
#include <inttypes.h>
#include <string.h>

#include "octopus.h"

#define NAME "adaptors.edge.cattle.io/registers"
#define VERSION "0.1.0+c"
#define LANGUAGE "c"

/* The grant name: the spec field the limb turns into a TCP grant (see describe). */
#define GRANT "endpoint"
#define TIMEOUT_MS 1000
#define MAX_COUNT 16
/* MBAP header (7) + function (1) + byte count (1) + 2 bytes a register. */
#define FRAME_MAX (9 + 2 * MAX_COUNT)

typedef struct {
    char endpoint[256];
    int64_t unit_id;
    int64_t address;
    int64_t count;
    int64_t sync_interval_ms;
} spec_t;

static struct {
    bool configured;
    spec_t spec;
    uint64_t polls;
    bool connected;
    octopus_adaptor_socket_own_tcp_stream_t stream;
} device;

/* "host:port" with a non-empty host and a port 1..=65535. */
static bool valid_endpoint(const char *endpoint) {
    const char *colon = strrchr(endpoint, ':');
    if (!colon || colon == endpoint || colon[1] == '\0') return false;
    long port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        port = port * 10 + (*p - '0');
        if (port > 65535) return false;
    }
    return port >= 1;
}

static bool parse_spec(const adaptor_string_t *json, spec_t *spec, oct_error *err) {
    oct_json_object obj;
    if (!oct_spec_parse(json, &obj, err) ||
        !oct_spec_string(&obj, "endpoint", NULL, spec->endpoint, sizeof spec->endpoint, err) ||
        !oct_spec_int(&obj, "unitId", 1, 0, 255, &spec->unit_id, err) ||
        !oct_spec_int(&obj, "address", 0, 0, 65535, &spec->address, err) ||
        !oct_spec_int(&obj, "count", 1, 1, MAX_COUNT, &spec->count, err) ||
        !oct_spec_int(&obj, "syncIntervalMs", 1000, 10, INT64_MAX, &spec->sync_interval_ms, err))
        return false;
    if (!valid_endpoint(spec->endpoint))
        return oct_fail(err, OCT_INVALID_SPEC, "endpoint must be \"host:port\", got \"%.200s\"",
                        spec->endpoint);
    if (spec->address + spec->count > 65536)
        return oct_fail(err, OCT_INVALID_SPEC,
                        "address + count must be <= 65536, got %" PRId64 " + %" PRId64,
                        spec->address, spec->count);
    return true;
}

static void disconnect(void) {
    if (device.connected) {
        octopus_adaptor_socket_tcp_stream_drop_own(device.stream);
        device.connected = false;
    }
}

void exports_octopus_adaptor_driver_describe(exports_octopus_adaptor_driver_adaptor_info_t *ret) {
    static const oct_resource_field fields[] = {{GRANT, OCTOPUS_ADAPTOR_TYPES_RESOURCE_KIND_TCP}};
    oct_describe(ret, NAME, VERSION, "devices.edge.cattle.io/v1alpha1", "RegisterDevice", fields, 1);
}

static bool apply(exports_octopus_adaptor_driver_device_config_t *config, bool first,
                  exports_octopus_adaptor_driver_device_settings_t *ret,
                  exports_octopus_adaptor_driver_adaptor_error_t *out) {
    spec_t spec;
    oct_error err;
    bool ok = parse_spec(&config->spec, &spec, &err);
    exports_octopus_adaptor_driver_device_config_free(config); /* arguments are ours to free */
    if (!ok) {
        if (first) {
            device.configured = false;
            disconnect();
        }
        oct_error_export(&err, out);
        return false;
    }
    /* Keep the connection unless it now leads elsewhere. */
    if (first || !device.configured || strcmp(spec.endpoint, device.spec.endpoint) != 0 ||
        spec.unit_id != device.spec.unit_id)
        disconnect();
    device.spec = spec;
    device.configured = true;
    ret->poll_interval_ms.is_some = true;
    ret->poll_interval_ms.val = (uint64_t)spec.sync_interval_ms;
    return true;
}

bool exports_octopus_adaptor_driver_configure(exports_octopus_adaptor_driver_device_config_t *config,
                                              exports_octopus_adaptor_driver_device_settings_t *ret,
                                              exports_octopus_adaptor_driver_adaptor_error_t *err) {
    return apply(config, true, ret, err);
}

bool exports_octopus_adaptor_driver_reconfigure(exports_octopus_adaptor_driver_device_config_t *config,
                                                exports_octopus_adaptor_driver_device_settings_t *ret,
                                                exports_octopus_adaptor_driver_adaptor_error_t *err) {
    return apply(config, false, ret, err);
}

static bool ensure_connected(oct_error *err) {
    if (device.connected) return true;
    adaptor_string_t grant = {(uint8_t *)GRANT, strlen(GRANT)};
    octopus_adaptor_socket_capability_error_t cap;
    if (!octopus_adaptor_socket_connect_tcp(&grant, TIMEOUT_MS, &device.stream, &cap))
        return oct_fail_capability(err, &cap, "cannot connect to " GRANT);
    device.connected = true;
    oct_log(OCTOPUS_ADAPTOR_LOG_LEVEL_INFO, "connected to %s", device.spec.endpoint);
    return true;
}

/* One "read holding registers" exchange; fills `values` (device.spec.count of them). */
static bool read_registers(uint16_t values[MAX_COUNT], oct_error *err) {
    const spec_t *spec = &device.spec;
    uint16_t tid = (uint16_t)((device.polls + 1) & 0xFFFF);
    uint16_t address = (uint16_t)spec->address, count = (uint16_t)spec->count;
    uint8_t request[12] = {
        (uint8_t)(tid >> 8), (uint8_t)tid, 0, 0, 0, 6, (uint8_t)spec->unit_id, 3,
        (uint8_t)(address >> 8), (uint8_t)address, (uint8_t)(count >> 8), (uint8_t)count,
    };
    octopus_adaptor_socket_borrow_tcp_stream_t stream =
        octopus_adaptor_socket_borrow_tcp_stream(device.stream);
    octopus_adaptor_socket_capability_error_t cap;

    adaptor_list_u8_t data = {request, sizeof request};
    uint32_t sent = 0;
    if (!octopus_adaptor_socket_method_tcp_stream_send(stream, &data, TIMEOUT_MS, &sent, &cap)) {
        disconnect();
        return oct_fail_capability(err, &cap, "sending the request");
    }
    if (sent != sizeof request) {
        disconnect();
        return oct_fail(err, OCT_UNREACHABLE, "sending the request: short write");
    }

    /* Both a reply and an exception start with 9 bytes; a reply then has the registers. */
    uint8_t frame[FRAME_MAX];
    size_t have = 0, need = 9;
    bool header_checked = false;
    while (have < need) {
        adaptor_list_u8_t chunk;
        if (!octopus_adaptor_socket_method_tcp_stream_receive(stream, (uint32_t)(need - have),
                                                              TIMEOUT_MS, &chunk, &cap)) {
            disconnect();
            return oct_fail_capability(err, &cap, "reading the response");
        }
        if (chunk.len == 0) {
            disconnect();
            return oct_fail(err, OCT_UNREACHABLE, "reading the response: the server closed the connection");
        }
        size_t take = chunk.len;
        if (take > need - have) take = need - have; /* never more than asked for */
        memcpy(frame + have, chunk.ptr, take);
        have += take;
        adaptor_list_u8_free(&chunk);

        if (have >= 9 && !header_checked) {
            header_checked = true;
            uint16_t got_tid = (uint16_t)(frame[0] << 8 | frame[1]);
            if (got_tid != tid || frame[2] != 0 || frame[3] != 0) {
                disconnect();
                return oct_fail(err, OCT_PROTOCOL, "response to transaction %u (protocol %u), expected %u",
                                got_tid, (unsigned)(frame[2] << 8 | frame[3]), tid);
            }
            if (frame[6] != (uint8_t)spec->unit_id) {
                disconnect();
                return oct_fail(err, OCT_PROTOCOL, "response from unit %u, expected %u", frame[6],
                                (unsigned)spec->unit_id);
            }
            if (frame[7] == 0x83) /* a complete exception frame; the stream stays usable */
                return oct_fail(err, OCT_PROTOCOL, "exception %u", frame[8]);
            if (frame[7] != 3) {
                disconnect();
                return oct_fail(err, OCT_PROTOCOL, "response with function 0x%02x, expected 0x03",
                                frame[7]);
            }
            if (frame[8] != 2 * count) {
                disconnect();
                return oct_fail(err, OCT_PROTOCOL, "response with %u data bytes, expected %u",
                                frame[8], 2u * count);
            }
            need = 9 + 2 * (size_t)count;
        }
    }
    for (size_t i = 0; i < count; i++) values[i] = (uint16_t)(frame[9 + 2 * i] << 8 | frame[10 + 2 * i]);
    return true;
}

bool exports_octopus_adaptor_driver_poll(adaptor_string_t *ret,
                                         exports_octopus_adaptor_driver_adaptor_error_t *out) {
    oct_error err;
    uint16_t values[MAX_COUNT];
    if (!device.configured) {
        oct_fail(&err, OCT_INTERNAL, "the device is not configured");
        oct_error_export(&err, out);
        return false;
    }
    if (!ensure_connected(&err) || !read_registers(values, &err)) {
        oct_error_export(&err, out);
        return false;
    }
    device.polls++;

    oct_buf status = {0};
    oct_buf_printf(&status, "{\"registers\":[");
    for (int64_t i = 0; i < device.spec.count; i++)
        oct_buf_printf(&status, "%s%u", i ? "," : "", values[i]);
    oct_buf_printf(&status, "],\"polls\":%" PRIu64 ",\"language\":\"%s\"}", device.polls, LANGUAGE);
    if (!oct_buf_take_string(&status, ret, &err)) {
        oct_error_export(&err, out);
        return false;
    }
    return true;
}

bool exports_octopus_adaptor_driver_snapshot(adaptor_list_u8_t *ret,
                                             exports_octopus_adaptor_driver_adaptor_error_t *out) {
    oct_error err;
    oct_buf state = {0};
    oct_buf_printf(&state, "{\"polls\":%" PRIu64 "}", device.polls);
    if (!oct_buf_take_bytes(&state, ret, &err)) {
        oct_error_export(&err, out);
        return false;
    }
    return true;
}

bool exports_octopus_adaptor_driver_restore(adaptor_list_u8_t *state, adaptor_string_t *from_version,
                                            exports_octopus_adaptor_driver_adaptor_error_t *out) {
    oct_error err;
    oct_json_object obj;
    char why[160];
    int64_t polls = 0;
    bool ok = false;
    if (!oct_json_parse_object(state->ptr, state->len, &obj, why, sizeof why)) {
        oct_fail(&err, OCT_INCOMPATIBLE_STATE, "expected {\"polls\": <count>}, the state is %s", why);
    } else if (oct_json_int(oct_json_get(&obj, "polls"), &polls) != OCT_INT_OK || polls < 0) {
        oct_fail(&err, OCT_INCOMPATIBLE_STATE,
                 "expected {\"polls\": <count>}, polls is missing or not a non-negative integer");
    } else {
        device.polls = (uint64_t)polls;
        ok = true;
    }
    adaptor_list_u8_free(state);
    adaptor_string_free(from_version);
    if (!ok) oct_error_export(&err, out);
    return ok;
}

void exports_octopus_adaptor_driver_shutdown(void) { disconnect(); }
