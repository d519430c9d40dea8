/* octopus.c: see octopus.h. No dependencies beyond libc and the generated bindings. */
#include "octopus.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocation failures trap (as the bindings' cabi_realloc does): with the limb's memory
 * limit they mean the adaptor is broken, and the limb restarts a trapped instance. */
static void *oct_xmalloc(size_t size) {
    void *ptr = malloc(size ? size : 1);
    if (!ptr) abort();
    return ptr;
}

/* ------------------------------------------------------------------ errors */

bool oct_fail(oct_error *err, oct_error_kind kind, const char *fmt, ...) {
    va_list args;
    err->kind = kind;
    va_start(args, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    return false;
}

/* Precision for printing a WIT string or raw JSON (not NUL-terminated) with "%.*s". */
static int clamp_len(size_t len) { return len > 200 ? 200 : (int)len; }

bool oct_fail_capability(oct_error *err, octopus_adaptor_types_capability_error_t *cap,
                         const char *what) {
    const adaptor_string_t *text = NULL;
    const char *label = "";
    oct_error_kind kind = OCT_UNREACHABLE;
    switch (cap->tag) {
    case OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_NOT_PERMITTED:
        kind = OCT_NOT_PERMITTED;
        text = &cap->val.not_permitted;
        break;
    case OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_TIMEOUT:
        label = "timed out";
        break;
    case OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_LIMIT_REACHED:
        label = "handle limit reached: ";
        text = &cap->val.limit_reached;
        break;
    case OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_CLOSED:
        label = "connection closed";
        break;
    case OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_IO:
        text = &cap->val.io;
        break;
    case OCTOPUS_ADAPTOR_TYPES_CAPABILITY_ERROR_INVALID_ARGUMENT:
        label = "invalid argument: ";
        text = &cap->val.invalid_argument;
        break;
    default:
        label = "unknown capability error";
        break;
    }
    if (text && text->len > 0)
        oct_fail(err, kind, "%s: %s%.*s", what, label, clamp_len(text->len), (const char *)text->ptr);
    else
        oct_fail(err, kind, "%s: %s", what, label);
    octopus_adaptor_types_capability_error_free(cap);
    return false;
}

void oct_error_export(const oct_error *err, exports_octopus_adaptor_driver_adaptor_error_t *out) {
    out->tag = (uint8_t)err->kind;
    /* Every variant carries one string at the same place in the union. */
    oct_string_dup(&out->val.internal, err->message);
}

/* ------------------------------------------------------------- JSON reader */

#define OCT_JSON_MAX_DEPTH 64

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t pos;
    const char *error; /* first error, static text */
} json_parser;

static bool jp_fail(json_parser *jp, const char *what) {
    if (!jp->error) jp->error = what;
    return false;
}

static bool jp_at_end(const json_parser *jp) { return jp->pos >= jp->len; }

static uint8_t jp_peek(const json_parser *jp) { return jp->pos < jp->len ? jp->p[jp->pos] : 0; }

static void jp_ws(json_parser *jp) {
    while (jp->pos < jp->len) {
        uint8_t c = jp->p[jp->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        jp->pos++;
    }
}

static int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p[0..4] (caller checked the bounds). */
static int hex4(const uint8_t *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool jp_string(json_parser *jp) {
    if (jp_peek(jp) != '"') return jp_fail(jp, "expected a string");
    jp->pos++;
    while (!jp_at_end(jp)) {
        uint8_t c = jp->p[jp->pos];
        if (c == '"') {
            jp->pos++;
            return true;
        }
        if (c < 0x20) return jp_fail(jp, "control character in a string");
        if (c == '\\') {
            if (jp->pos + 1 >= jp->len) break;
            uint8_t e = jp->p[jp->pos + 1];
            if (e == 'u') {
                if (jp->len - jp->pos < 6 || hex4(jp->p + jp->pos + 2) < 0)
                    return jp_fail(jp, "bad \\u escape in a string");
                jp->pos += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) return jp_fail(jp, "bad escape in a string");
            jp->pos += 2;
            continue;
        }
        jp->pos++;
    }
    return jp_fail(jp, "unterminated string");
}

static bool jp_digits(json_parser *jp) {
    size_t start = jp->pos;
    while (jp->pos < jp->len && jp->p[jp->pos] >= '0' && jp->p[jp->pos] <= '9') jp->pos++;
    return jp->pos > start;
}

static bool jp_number(json_parser *jp) {
    if (jp_peek(jp) == '-') jp->pos++;
    if (jp_peek(jp) == '0') {
        jp->pos++;
    } else if (!jp_digits(jp)) {
        return jp_fail(jp, "bad number");
    }
    if (jp_peek(jp) == '.') {
        jp->pos++;
        if (!jp_digits(jp)) return jp_fail(jp, "bad number");
    }
    if (jp_peek(jp) == 'e' || jp_peek(jp) == 'E') {
        jp->pos++;
        if (jp_peek(jp) == '+' || jp_peek(jp) == '-') jp->pos++;
        if (!jp_digits(jp)) return jp_fail(jp, "bad number");
    }
    return true;
}

static bool jp_literal(json_parser *jp, const char *word) {
    size_t n = strlen(word);
    if (jp->len - jp->pos < n || memcmp(jp->p + jp->pos, word, n) != 0)
        return jp_fail(jp, "unexpected character");
    jp->pos += n;
    return true;
}

static bool jp_value(json_parser *jp, int depth);

static bool jp_array(json_parser *jp, int depth) {
    jp->pos++; /* '[' */
    jp_ws(jp);
    if (jp_peek(jp) == ']') {
        jp->pos++;
        return true;
    }
    for (;;) {
        if (!jp_value(jp, depth + 1)) return false;
        jp_ws(jp);
        if (jp_at_end(jp)) return jp_fail(jp, "unterminated array");
        uint8_t c = jp->p[jp->pos++];
        if (c == ']') return true;
        if (c != ',') return jp_fail(jp, "expected ',' or ']' in an array");
        jp_ws(jp);
    }
}

static bool jp_object(json_parser *jp, int depth) {
    jp->pos++; /* '{' */
    jp_ws(jp);
    if (jp_peek(jp) == '}') {
        jp->pos++;
        return true;
    }
    for (;;) {
        if (!jp_string(jp)) return jp_fail(jp, "expected a member name");
        jp_ws(jp);
        if (jp_peek(jp) != ':') return jp_fail(jp, "expected ':' after a member name");
        jp->pos++;
        jp_ws(jp);
        if (!jp_value(jp, depth + 1)) return false;
        jp_ws(jp);
        if (jp_at_end(jp)) return jp_fail(jp, "unterminated object");
        uint8_t c = jp->p[jp->pos++];
        if (c == '}') return true;
        if (c != ',') return jp_fail(jp, "expected ',' or '}' in an object");
        jp_ws(jp);
    }
}

/* Validates one value starting at jp->pos (no leading whitespace). */
static bool jp_value(json_parser *jp, int depth) {
    if (depth > OCT_JSON_MAX_DEPTH) return jp_fail(jp, "nested too deeply");
    if (jp_at_end(jp)) return jp_fail(jp, "unexpected end");
    uint8_t c = jp->p[jp->pos];
    switch (c) {
    case '{': return jp_object(jp, depth);
    case '[': return jp_array(jp, depth);
    case '"': return jp_string(jp);
    case 't': return jp_literal(jp, "true");
    case 'f': return jp_literal(jp, "false");
    case 'n': return jp_literal(jp, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return jp_number(jp);
        return jp_fail(jp, "unexpected character");
    }
}

bool oct_json_parse_object(const uint8_t *bytes, size_t len, oct_json_object *out, char *why,
                           size_t why_len) {
    json_parser jp = {bytes, len, 0, NULL};
    if (len > 0 && !bytes) {
        snprintf(why, why_len, "no data");
        return false;
    }
    jp_ws(&jp);
    if (jp_peek(&jp) != '{') {
        /* Say what it is instead, if it is valid JSON at all. */
        if (jp_value(&jp, 0)) {
            jp_ws(&jp);
            if (jp_at_end(&jp)) {
                snprintf(why, why_len, "not a JSON object");
                return false;
            }
        }
        snprintf(why, why_len, "not valid JSON: %s at byte %zu", jp.error ? jp.error : "trailing data",
                 jp.pos);
        return false;
    }
    size_t start = jp.pos;
    if (!jp_value(&jp, 0)) {
        snprintf(why, why_len, "not valid JSON: %s at byte %zu", jp.error, jp.pos);
        return false;
    }
    size_t end = jp.pos;
    jp_ws(&jp);
    if (!jp_at_end(&jp)) {
        snprintf(why, why_len, "not valid JSON: trailing data at byte %zu", jp.pos);
        return false;
    }
    out->raw = bytes + start;
    out->len = end - start;
    return true;
}

/* Compares a raw (still escaped) JSON string body with a plain ASCII key. */
static bool key_equals(const uint8_t *body, size_t len, const char *key) {
    size_t i = 0;
    for (; *key; key++) {
        if (i >= len) return false;
        uint8_t c = body[i];
        if (c == '\\') {
            if (i + 1 >= len) return false;
            uint8_t e = body[i + 1];
            int decoded;
            if (e == 'u') {
                if (len - i < 6) return false;
                decoded = hex4(body + i + 2);
                i += 6;
            } else {
                switch (e) {
                case 'b': decoded = '\b'; break;
                case 'f': decoded = '\f'; break;
                case 'n': decoded = '\n'; break;
                case 'r': decoded = '\r'; break;
                case 't': decoded = '\t'; break;
                default: decoded = e; break;
                }
                i += 2;
            }
            if (decoded != (uint8_t)*key) return false;
        } else {
            if (c != (uint8_t)*key) return false;
            i++;
        }
    }
    return i == len;
}

static oct_json_type type_of(uint8_t first) {
    switch (first) {
    case '{': return OCT_JSON_OBJECT;
    case '[': return OCT_JSON_ARRAY;
    case '"': return OCT_JSON_STRING;
    case 't':
    case 'f': return OCT_JSON_BOOL;
    case 'n': return OCT_JSON_NULL;
    default: return OCT_JSON_NUMBER;
    }
}

oct_json_value oct_json_get(const oct_json_object *obj, const char *key) {
    oct_json_value found = {OCT_JSON_MISSING, NULL, 0};
    if (!obj->raw || obj->len < 2) return found;
    /* The document was validated, but every step still checks, so a misuse cannot read
     * out of bounds. */
    json_parser jp = {obj->raw, obj->len, 1, NULL};
    jp_ws(&jp);
    if (jp_peek(&jp) == '}') return found;
    for (;;) {
        size_t key_start = jp.pos;
        if (!jp_string(&jp)) return found;
        const uint8_t *body = jp.p + key_start + 1;
        size_t body_len = jp.pos - key_start - 2;
        jp_ws(&jp);
        if (jp_peek(&jp) != ':') return found;
        jp.pos++;
        jp_ws(&jp);
        size_t value_start = jp.pos;
        if (!jp_value(&jp, 1)) return found;
        if (key_equals(body, body_len, key)) {
            found.type = type_of(jp.p[value_start]);
            found.raw = jp.p + value_start;
            found.len = jp.pos - value_start;
        }
        jp_ws(&jp);
        if (jp_peek(&jp) != ',') return found;
        jp.pos++;
        jp_ws(&jp);
    }
}

oct_int_status oct_json_int(oct_json_value value, int64_t *out) {
    if (value.type != OCT_JSON_NUMBER || value.len == 0) return OCT_INT_NOT_INTEGER;
    size_t i = 0;
    bool negative = false;
    if (value.raw[0] == '-') {
        negative = true;
        i = 1;
    }
    if (i >= value.len) return OCT_INT_NOT_INTEGER;
    /* The magnitude limit: 2^63 - 1, or 2^63 for a negative number. */
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t magnitude = 0;
    bool overflow = false;
    for (; i < value.len; i++) {
        uint8_t c = value.raw[i];
        if (c < '0' || c > '9') return OCT_INT_NOT_INTEGER; /* '.', 'e', 'E' */
        uint64_t digit = (uint64_t)(c - '0');
        if (magnitude > (limit - digit) / 10) overflow = true;
        else magnitude = magnitude * 10 + digit;
    }
    if (overflow) return OCT_INT_OVERFLOW;
    if (negative)
        *out = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    else
        *out = (int64_t)magnitude;
    return OCT_INT_OK;
}

/* Appends code point `cp` as UTF-8 if it fits; false otherwise. */
static bool put_utf8(char *out, size_t cap, size_t *n, uint32_t cp) {
    uint8_t bytes[4];
    size_t count;
    if (cp < 0x80) {
        bytes[0] = (uint8_t)cp;
        count = 1;
    } else if (cp < 0x800) {
        bytes[0] = (uint8_t)(0xC0 | (cp >> 6));
        bytes[1] = (uint8_t)(0x80 | (cp & 0x3F));
        count = 2;
    } else if (cp < 0x10000) {
        bytes[0] = (uint8_t)(0xE0 | (cp >> 12));
        bytes[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        bytes[2] = (uint8_t)(0x80 | (cp & 0x3F));
        count = 3;
    } else {
        bytes[0] = (uint8_t)(0xF0 | (cp >> 18));
        bytes[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        bytes[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        bytes[3] = (uint8_t)(0x80 | (cp & 0x3F));
        count = 4;
    }
    if (cap - *n < count + 1) return false; /* keep room for the NUL */
    memcpy(out + *n, bytes, count);
    *n += count;
    return true;
}

bool oct_json_string(oct_json_value value, char *out, size_t cap, size_t *len) {
    if (value.type != OCT_JSON_STRING || value.len < 2 || cap == 0) return false;
    const uint8_t *s = value.raw + 1;
    size_t slen = value.len - 2, i = 0, n = 0;
    while (i < slen) {
        uint8_t c = s[i];
        if (c != '\\') {
            if (cap - n < 2) return false;
            out[n++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= slen) return false;
        uint8_t e = s[i + 1];
        uint32_t cp;
        if (e == 'u') {
            if (slen - i < 6) return false;
            int unit = hex4(s + i + 2);
            if (unit < 0) return false;
            i += 6;
            cp = (uint32_t)unit;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* A high surrogate: combine it with the low one that should follow. */
                int low = -1;
                if (slen - i >= 6 && s[i] == '\\' && s[i + 1] == 'u') low = hex4(s + i + 2);
                if (low >= 0xDC00 && low <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
                    i += 6;
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
        } else {
            switch (e) {
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            default: cp = e; break;
            }
            i += 2;
        }
        if (!put_utf8(out, cap, &n, cp)) return false;
    }
    out[n] = '\0';
    if (len) *len = n;
    return true;
}

const char *oct_json_type_name(oct_json_type type) {
    switch (type) {
    case OCT_JSON_MISSING: return "nothing";
    case OCT_JSON_NULL: return "null";
    case OCT_JSON_BOOL: return "a boolean";
    case OCT_JSON_NUMBER: return "a number";
    case OCT_JSON_STRING: return "a string";
    case OCT_JSON_ARRAY: return "an array";
    case OCT_JSON_OBJECT: return "an object";
    }
    return "something else";
}

/* ------------------------------------------------------------- spec reading */

bool oct_spec_parse(const adaptor_string_t *spec, oct_json_object *out, oct_error *err) {
    char why[160];
    if (!oct_json_parse_object(spec->ptr, spec->len, out, why, sizeof why))
        return oct_fail(err, OCT_INVALID_SPEC, "spec is %s", why);
    return true;
}

/* "1..=16", ">= 10", "<= 5" or "" (no bound). */
static void describe_range(char *buf, size_t cap, int64_t min, int64_t max) {
    if (min != INT64_MIN && max != INT64_MAX)
        snprintf(buf, cap, " %" PRId64 "..=%" PRId64, min, max);
    else if (min != INT64_MIN)
        snprintf(buf, cap, " >= %" PRId64, min);
    else if (max != INT64_MAX)
        snprintf(buf, cap, " <= %" PRId64, max);
    else
        snprintf(buf, cap, " an integer");
}

bool oct_spec_int(const oct_json_object *spec, const char *field, int64_t def, int64_t min,
                  int64_t max, int64_t *out, oct_error *err) {
    oct_json_value value = oct_json_get(spec, field);
    if (value.type == OCT_JSON_MISSING || value.type == OCT_JSON_NULL) {
        *out = def;
        return true;
    }
    char range[64];
    describe_range(range, sizeof range, min, max);
    if (value.type != OCT_JSON_NUMBER)
        return oct_fail(err, OCT_INVALID_SPEC, "%s must be an integer, got %s", field,
                        oct_json_type_name(value.type));
    int64_t n = 0;
    switch (oct_json_int(value, &n)) {
    case OCT_INT_OK:
        break;
    case OCT_INT_NOT_INTEGER:
        return oct_fail(err, OCT_INVALID_SPEC, "%s must be an integer, got %.*s", field,
                        clamp_len(value.len), (const char *)value.raw);
    case OCT_INT_OVERFLOW:
        return oct_fail(err, OCT_INVALID_SPEC, "%s must be%s, got %.*s", field, range,
                        clamp_len(value.len), (const char *)value.raw);
    }
    if (n < min || n > max)
        return oct_fail(err, OCT_INVALID_SPEC, "%s must be%s, got %" PRId64, field, range, n);
    *out = n;
    return true;
}

bool oct_spec_string(const oct_json_object *spec, const char *field, const char *def, char *out,
                     size_t cap, oct_error *err) {
    oct_json_value value = oct_json_get(spec, field);
    if (value.type == OCT_JSON_MISSING || value.type == OCT_JSON_NULL) {
        if (!def) return oct_fail(err, OCT_INVALID_SPEC, "%s is required", field);
        if (strlen(def) >= cap) return oct_fail(err, OCT_INTERNAL, "default of %s is too long", field);
        strcpy(out, def);
        return true;
    }
    if (value.type != OCT_JSON_STRING)
        return oct_fail(err, OCT_INVALID_SPEC, "%s must be a string, got %s", field,
                        oct_json_type_name(value.type));
    size_t len = 0;
    if (!oct_json_string(value, out, cap, &len))
        return oct_fail(err, OCT_INVALID_SPEC, "%s is too long (at most %zu bytes)", field, cap - 1);
    if (strlen(out) != len) return oct_fail(err, OCT_INVALID_SPEC, "%s must not contain \\u0000", field);
    return true;
}

/* ------------------------------------------------------------ JSON writer */

static bool buf_reserve(oct_buf *buf, size_t extra) {
    if (buf->failed) return false;
    if (buf->cap - buf->len > extra) return true; /* keeps room for vsnprintf's NUL */
    size_t want = buf->cap ? buf->cap : 128;
    while (want - buf->len <= extra) {
        if (want > SIZE_MAX / 2) {
            buf->failed = true;
            return false;
        }
        want *= 2;
    }
    char *grown = realloc(buf->ptr, want);
    if (!grown) {
        buf->failed = true;
        return false;
    }
    buf->ptr = grown;
    buf->cap = want;
    return true;
}

void oct_buf_printf(oct_buf *buf, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int needed = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    if (needed < 0) {
        buf->failed = true;
        return;
    }
    if (!buf_reserve(buf, (size_t)needed)) return;
    va_start(args, fmt);
    vsnprintf(buf->ptr + buf->len, buf->cap - buf->len, fmt, args);
    va_end(args);
    buf->len += (size_t)needed;
}

static void buf_append(oct_buf *buf, const char *bytes, size_t len) {
    if (!buf_reserve(buf, len)) return;
    memcpy(buf->ptr + buf->len, bytes, len);
    buf->len += len;
    buf->ptr[buf->len] = '\0';
}

void oct_buf_json_string(oct_buf *buf, const char *text, size_t len) {
    buf_append(buf, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            char escaped[2] = {'\\', (char)c};
            buf_append(buf, escaped, 2);
        } else if (c < 0x20) {
            oct_buf_printf(buf, "\\u%04x", c);
        } else {
            buf_append(buf, (const char *)&c, 1);
        }
    }
    buf_append(buf, "\"", 1);
}

static bool buf_take(oct_buf *buf, uint8_t **ptr, size_t *len, oct_error *err) {
    if (buf->failed) {
        oct_buf_free(buf);
        return oct_fail(err, OCT_INTERNAL, "out of memory writing JSON");
    }
    if (buf->len == 0) {
        /* The bindings free only non-empty values; an empty one must not leak. */
        oct_buf_free(buf);
        *ptr = NULL;
        *len = 0;
        return true;
    }
    *ptr = (uint8_t *)buf->ptr;
    *len = buf->len;
    buf->ptr = NULL;
    buf->len = buf->cap = 0;
    return true;
}

bool oct_buf_take_string(oct_buf *buf, adaptor_string_t *out, oct_error *err) {
    return buf_take(buf, &out->ptr, &out->len, err);
}

bool oct_buf_take_bytes(oct_buf *buf, adaptor_list_u8_t *out, oct_error *err) {
    return buf_take(buf, &out->ptr, &out->len, err);
}

void oct_buf_free(oct_buf *buf) {
    free(buf->ptr);
    buf->ptr = NULL;
    buf->len = buf->cap = 0;
    buf->failed = false;
}

/* ------------------------------------------------------------ host helpers */

void oct_string_dup(adaptor_string_t *out, const char *text) {
    size_t len = strlen(text);
    if (len == 0) {
        out->ptr = NULL;
        out->len = 0;
        return;
    }
    out->ptr = oct_xmalloc(len);
    memcpy(out->ptr, text, len);
    out->len = len;
}

void oct_log(octopus_adaptor_log_level_t level, const char *fmt, ...) {
    char line[512];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (n < 0) return;
    adaptor_string_t message = {(uint8_t *)line, strlen(line)};
    octopus_adaptor_log_log(level, &message); /* the host copies it; it stays ours */
}

void oct_describe(exports_octopus_adaptor_driver_adaptor_info_t *ret, const char *name,
                  const char *version, const char *api_version, const char *kind,
                  const oct_resource_field *fields, size_t field_count) {
    oct_string_dup(&ret->name, name);
    oct_string_dup(&ret->version, version);
    octopus_adaptor_types_model_info_t *model = oct_xmalloc(sizeof *model);
    oct_string_dup(&model->model.api_version, api_version);
    oct_string_dup(&model->model.kind, kind);
    model->resource_fields.ptr = NULL;
    model->resource_fields.len = 0;
    if (field_count > 0) {
        octopus_adaptor_types_resource_field_t *list = oct_xmalloc(field_count * sizeof *list);
        for (size_t i = 0; i < field_count; i++) {
            oct_string_dup(&list[i].path, fields[i].path);
            list[i].kind = fields[i].kind;
        }
        model->resource_fields.ptr = list;
        model->resource_fields.len = field_count;
    }
    ret->models.ptr = model;
    ret->models.len = 1;
}

/* --------------------------------------------------------- declared models */

#ifdef OCT_DECLARED_MODELS
static void oct_string_list_dup(adaptor_list_string_t *out, const char *const *items, size_t n) {
    out->ptr = NULL;
    out->len = n;
    if (n == 0) return;
    out->ptr = oct_xmalloc(n * sizeof *out->ptr);
    for (size_t i = 0; i < n; i++) oct_string_dup(&out->ptr[i], items[i]);
}

static void oct_option_string_dup(adaptor_option_string_t *out, const char *text) {
    out->is_some = text != NULL;
    if (text) oct_string_dup(&out->val, text);
}

void oct_describe_models(exports_octopus_adaptor_models_list_model_schema_t *ret,
                         const oct_model_decl *models, size_t count) {
    ret->ptr = NULL;
    ret->len = count;
    if (count == 0) return;
    ret->ptr = oct_xmalloc(count * sizeof *ret->ptr);
    for (size_t i = 0; i < count; i++) {
        const oct_model_decl *m = &models[i];
        exports_octopus_adaptor_models_model_schema_t *s = &ret->ptr[i];
        oct_string_dup(&s->model.api_version, m->api_version);
        oct_string_dup(&s->model.kind, m->kind);
        oct_string_dup(&s->description, m->description);
        oct_string_dup(&s->spec, m->spec);
        oct_string_dup(&s->status, m->status);
        oct_string_list_dup(&s->short_names, m->short_names, m->short_name_count);
        oct_string_list_dup(&s->categories, m->categories, m->category_count);
        s->printer_columns.ptr = NULL;
        s->printer_columns.len = m->column_count;
        if (m->column_count == 0) continue;
        s->printer_columns.ptr = oct_xmalloc(m->column_count * sizeof *s->printer_columns.ptr);
        for (size_t j = 0; j < m->column_count; j++) {
            const oct_printer_column *c = &m->columns[j];
            exports_octopus_adaptor_models_printer_column_t *o = &s->printer_columns.ptr[j];
            oct_string_dup(&o->name, c->name);
            oct_string_dup(&o->json_path, c->json_path);
            oct_string_dup(&o->type, c->type);
            oct_option_string_dup(&o->format, c->format);
            oct_option_string_dup(&o->description, c->description);
            o->priority = c->priority;
        }
    }
}
#endif
