/*
 * octopus.h: small helpers for Octopus adaptors written in C.
 *
 * Copy this file and octopus.c next to your adaptor. They give you what the Rust SDK
 * gives Rust authors:
 *   - errors that map onto the WIT `adaptor-error` variants (oct_error, oct_fail),
 *   - a strict JSON reader for the spec and for restored state (oct_json_*), and spec
 *     readers whose errors name the field (oct_spec_*),
 *   - a growing buffer to write the status and snapshot JSON (oct_buf_*),
 *   - logging with printf formatting (oct_log) and a one-model describe() (oct_describe),
 *   - the `models` export from the folder's models.json (oct_describe_models).
 *
 * Ownership, as wit-bindgen's C bindings define it:
 *   - Arguments of exported functions (the device-config, restored state, ...) belong to
 *     you: free them with the generated *_free functions before returning.
 *   - Values you return (strings, lists, error messages) must be heap memory from
 *     malloc; the bindings free them after the host has copied them. Never return a
 *     string literal or a stack buffer. The oct_* functions below do this for you.
 *   - Results of imported functions (a received list, a capability-error message) are
 *     heap memory you own: free them (oct_fail_capability does so for errors).
 *   - Arguments you pass to imported functions stay yours (they are copied).
 */
#ifndef OCTOPUS_H
#define OCTOPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adaptor.h"

#define OCT_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* ------------------------------------------------------------------ errors */

/* The WIT `adaptor-error` variants. */
typedef enum {
    OCT_INVALID_SPEC = OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_INVALID_SPEC,
    OCT_NOT_PERMITTED = OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_NOT_PERMITTED,
    OCT_UNREACHABLE = OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_UNREACHABLE,
    OCT_PROTOCOL = OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_PROTOCOL,
    OCT_INCOMPATIBLE_STATE = OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_INCOMPATIBLE_STATE,
    OCT_INTERNAL = OCTOPUS_ADAPTOR_TYPES_ADAPTOR_ERROR_INTERNAL,
} oct_error_kind;

/* A typed error with its message; lives on the stack, no allocation. */
typedef struct {
    oct_error_kind kind;
    char message[256];
} oct_error;

/* Sets `err` and returns false, so that `return oct_fail(err, ...);` reads naturally. */
bool oct_fail(oct_error *err, oct_error_kind kind, const char *fmt, ...) OCT_PRINTF(3, 4);

/* Turns a capability-error into an adaptor error: `not-permitted` stays `not-permitted`,
 * everything else (timeout, closed, io, ...) is `unreachable`. The message is
 * "<what>: <capability message>". Frees the capability-error's strings. Returns false. */
bool oct_fail_capability(oct_error *err, octopus_adaptor_types_capability_error_t *cap,
                         const char *what);

/* Copies `err` into the WIT error an export returns (the message is heap-allocated). */
void oct_error_export(const oct_error *err, exports_octopus_adaptor_driver_adaptor_error_t *out);

/* ------------------------------------------------------------- JSON reader */

typedef enum {
    OCT_JSON_MISSING = 0, /* oct_json_get did not find the key */
    OCT_JSON_NULL,
    OCT_JSON_BOOL,
    OCT_JSON_NUMBER,
    OCT_JSON_STRING,
    OCT_JSON_ARRAY,
    OCT_JSON_OBJECT,
} oct_json_type;

/* One JSON value inside a validated document: its type and its raw text. */
typedef struct {
    oct_json_type type;
    const uint8_t *raw;
    size_t len;
} oct_json_value;

/* A validated JSON document whose top level is an object. Points into the caller's bytes,
 * which must outlive it. */
typedef struct {
    const uint8_t *raw;
    size_t len;
} oct_json_object;

/* Validates all of `bytes` as one JSON document (RFC 8259, nesting up to 64 levels) whose
 * top level is an object. On failure writes the reason into `why` and returns false. */
bool oct_json_parse_object(const uint8_t *bytes, size_t len, oct_json_object *out, char *why,
                           size_t why_len);

/* The value of top-level member `key` (type OCT_JSON_MISSING if absent; the last one
 * wins if the key repeats). */
oct_json_value oct_json_get(const oct_json_object *obj, const char *key);

typedef enum {
    OCT_INT_OK = 0,
    OCT_INT_NOT_INTEGER, /* not a number, or a number with a fraction or exponent */
    OCT_INT_OVERFLOW,    /* an integer outside int64_t */
} oct_int_status;

/* Reads an integer (JSON number without fraction or exponent) into `out`. */
oct_int_status oct_json_int(oct_json_value value, int64_t *out);

/* Decodes a JSON string (escapes resolved, UTF-8) into `out` with a terminating NUL.
 * Returns false if `value` is not a string or does not fit in `cap` bytes. `len` (may be
 * NULL) receives the decoded length; the text may contain NULs from \u0000. */
bool oct_json_string(oct_json_value value, char *out, size_t cap, size_t *len);

/* "a string", "an array", ...: for messages. */
const char *oct_json_type_name(oct_json_type type);

/* ------------------------------------------------------------- spec reading */

/* Parses a spec (the DeviceLink's template.spec); errors are `invalid-spec`. */
bool oct_spec_parse(const adaptor_string_t *spec, oct_json_object *out, oct_error *err);

/* Reads integer field `field`: absent or null gives `def`; a non-integer or a value
 * outside min..=max is `invalid-spec` naming the field ("count must be 1..=16, got 40"). */
bool oct_spec_int(const oct_json_object *spec, const char *field, int64_t def, int64_t min,
                  int64_t max, int64_t *out, oct_error *err);

/* Reads string field `field` into `out` (NUL-terminated; a \u0000 inside is refused).
 * Absent or null: `def` if not NULL, else `invalid-spec` "<field> is required". */
bool oct_spec_string(const oct_json_object *spec, const char *field, const char *def, char *out,
                     size_t cap, oct_error *err);

/* ------------------------------------------------------------ JSON writer */

/* A growing heap buffer for status and snapshot documents. Start with `oct_buf b = {0};`.
 * An allocation failure is remembered and reported by oct_buf_take_*. */
typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
    bool failed;
} oct_buf;

void oct_buf_printf(oct_buf *buf, const char *fmt, ...) OCT_PRINTF(2, 3);
/* Appends `text` as a quoted, escaped JSON string. */
void oct_buf_json_string(oct_buf *buf, const char *text, size_t len);
/* Hands the buffer to the host as a WIT string / list<u8> (the bindings free it). */
bool oct_buf_take_string(oct_buf *buf, adaptor_string_t *out, oct_error *err);
bool oct_buf_take_bytes(oct_buf *buf, adaptor_list_u8_t *out, oct_error *err);
void oct_buf_free(oct_buf *buf);

/* ------------------------------------------------------------ host helpers */

/* A heap copy of a C string as a WIT string, for values returned to the host. */
void oct_string_dup(adaptor_string_t *out, const char *text);

/* Writes one log line through the limb (truncated at 512 bytes). */
void oct_log(octopus_adaptor_log_level_t level, const char *fmt, ...) OCT_PRINTF(2, 3);

/* A spec field that names a resource the limb grants (e.g. {"endpoint", TCP}). */
typedef struct {
    const char *path;
    octopus_adaptor_types_resource_kind_t kind;
} oct_resource_field;

/* Fills describe()'s answer for an adaptor with one model. */
void oct_describe(exports_octopus_adaptor_driver_adaptor_info_t *ret, const char *name,
                  const char *version, const char *api_version, const char *kind,
                  const oct_resource_field *fields, size_t field_count);

/* --------------------------------------------------------- declared models */

/* A folder with models.json declares its models' schemas (contract 0.1.3): build.sh then
 * generates bindings for the world `described-adaptor`, defines OCT_DECLARED_MODELS and
 * writes `declared_models.h`, which holds models.json as the constants below
 * (`oct_declared_models`, OCT_DECLARED_MODEL_COUNT). Splitting the JSON at build time
 * keeps a JSON writer out of the component. */

/* A column of `kubectl get`; format and description may be NULL. */
typedef struct {
    const char *name;
    const char *json_path;
    const char *type;
    const char *format;
    const char *description;
    int32_t priority;
} oct_printer_column;

/* One model's declaration: spec and status are JSON text (status "" when none). */
typedef struct {
    const char *api_version;
    const char *kind;
    const char *description;
    const char *spec;
    const char *status;
    const char *const *short_names;
    size_t short_name_count;
    const char *const *categories;
    size_t category_count;
    const oct_printer_column *columns;
    size_t column_count;
} oct_model_decl;

#ifdef OCT_DECLARED_MODELS
/* Fills describe-models' answer (heap copies, as the bindings free it) from `models`. */
void oct_describe_models(exports_octopus_adaptor_models_list_model_schema_t *ret,
                         const oct_model_decl *models, size_t count);
#endif

#endif
