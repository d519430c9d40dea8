/*
 * The counter adaptor (adaptors.edge.cattle.io/counter): the smallest complete Octopus
 * adaptor in C. Copy this folder to start your own.
 *
 * Spec: {"step": <integer, default 1>, "syncIntervalMs": <integer >= 10, default 1000>}.
 * Every poll adds `step` to the count; the count survives a hot swap via snapshot/restore.
 *
 * One instance drives one device, so the device's state is simply a static variable.
 */
#include <inttypes.h>

#include "octopus.h"

#define NAME "adaptors.edge.cattle.io/counter"
#define VERSION "0.1.0+c"
#define LANGUAGE "c"

typedef struct {
    int64_t step;
    int64_t sync_interval_ms;
} spec_t;

static struct {
    bool configured;
    spec_t spec;
    int64_t count;
} device;

/* Field-by-field, so every error names its field; unknown fields are ignored. */
static bool parse_spec(const adaptor_string_t *json, spec_t *spec, oct_error *err) {
    oct_json_object obj;
    return oct_spec_parse(json, &obj, err) &&
           oct_spec_int(&obj, "step", 1, INT64_MIN, INT64_MAX, &spec->step, err) &&
           oct_spec_int(&obj, "syncIntervalMs", 1000, 10, INT64_MAX, &spec->sync_interval_ms, err);
}

void exports_octopus_adaptor_driver_describe(exports_octopus_adaptor_driver_adaptor_info_t *ret) {
    oct_describe(ret, NAME, VERSION, "devices.edge.cattle.io/v1alpha1", "CounterDevice", NULL, 0);
}

static bool apply(exports_octopus_adaptor_driver_device_config_t *config, bool first,
                  exports_octopus_adaptor_driver_device_settings_t *ret,
                  exports_octopus_adaptor_driver_adaptor_error_t *out) {
    spec_t spec;
    oct_error err;
    bool ok = parse_spec(&config->spec, &spec, &err);
    exports_octopus_adaptor_driver_device_config_free(config); /* arguments are ours to free */
    if (!ok) {
        if (first) device.configured = false; /* a failed reconfigure keeps the old spec */
        oct_error_export(&err, out);
        return false;
    }
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

bool exports_octopus_adaptor_driver_poll(adaptor_string_t *ret,
                                         exports_octopus_adaptor_driver_adaptor_error_t *out) {
    oct_error err;
    if (!device.configured) {
        oct_fail(&err, OCT_INTERNAL, "the device is not configured");
        oct_error_export(&err, out);
        return false;
    }
    /* Signed overflow is undefined in C: add as unsigned, which wraps. */
    device.count = (int64_t)((uint64_t)device.count + (uint64_t)device.spec.step);

    oct_buf status = {0};
    oct_buf_printf(&status, "{\"count\":%" PRId64 ",\"language\":\"%s\"}", device.count, LANGUAGE);
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
    oct_buf_printf(&state, "{\"count\":%" PRId64 "}", device.count);
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
    int64_t count = 0;
    bool ok = false;
    if (!oct_json_parse_object(state->ptr, state->len, &obj, why, sizeof why)) {
        oct_fail(&err, OCT_INCOMPATIBLE_STATE, "expected {\"count\": <integer>}, the state is %s", why);
    } else if (oct_json_int(oct_json_get(&obj, "count"), &count) != OCT_INT_OK) {
        oct_fail(&err, OCT_INCOMPATIBLE_STATE, "expected {\"count\": <integer>}, count is missing or not an integer");
    } else {
        device.count = count;
        ok = true;
    }
    adaptor_list_u8_free(state);
    adaptor_string_free(from_version);
    if (!ok) oct_error_export(&err, out);
    return ok;
}

#ifdef OCT_DECLARED_MODELS
/* The `models` export: this folder's models.json, which build.sh turned into
 * declared_models.h. Without models.json the build targets the plain `adaptor` world. */
#include "declared_models.h"

void exports_octopus_adaptor_models_describe_models(exports_octopus_adaptor_models_list_model_schema_t *ret) {
    oct_describe_models(ret, oct_declared_models, OCT_DECLARED_MODEL_COUNT);
}
#endif

void exports_octopus_adaptor_driver_shutdown(void) {
    /* Nothing to close: the counter holds no capability handles. */
}
