/*
 * pbjson.c - proto3 JSON mapping over protobuf-c descriptors.
 *
 * Encoding walks a message by its descriptor and writes what Python's
 * json_format writes; decoding builds a message field by field from a jansson
 * value, allocating with malloc so protobuf_c_message_free_unpacked(msg, NULL)
 * releases it like an unpacked message.
 */
#include "pbjson.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MEMBER(type, msg, off) (*(type *)((char *)(msg) + (off)))

/* ---- shared helpers ---------------------------------------------------- */

/* protobuf-c keeps no map_entry option; a map field is a repeated message
 * named *Entry with exactly the fields key = 1 and value = 2. */
static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->name);
    return n > 5 && strcmp(d->name + n - 5, "Entry") == 0 && d->n_fields == 2 &&
           d->fields[0].id == 1 && strcmp(d->fields[0].name, "key") == 0 && d->fields[1].id == 2 &&
           strcmp(d->fields[1].name, "value") == 0;
}

static int is_map_field(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE &&
           is_map_entry(f->descriptor);
}

/* protobuf's ToJsonName: drop underscores, upper-case the letter after one. */
static void json_name(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    int up = 0;
    for (const char *p = name; *p && o + 1 < cap; p++) {
        if (*p == '_') {
            up = 1;
            continue;
        }
        out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        up = 0;
    }
    out[o] = '\0';
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

/* ---- encoding ---------------------------------------------------------- */

static void encode_message(const ProtobufCMessage *msg, fn_buf *out);

static void encode_value(const ProtobufCFieldDescriptor *f, const void *p, fn_buf *out)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fn_buf_printf(out, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fn_buf_printf(out, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fn_buf_printf(out, "\"%" PRId64 "\"", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fn_buf_printf(out, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        fn_buf_json_float(out, *(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        fn_buf_json_double(out, *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        fn_buf_puts(out, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev) {
            fn_buf_json_string(out, ev->name, strlen(ev->name));
        } else {
            fn_buf_printf(out, "%d", v);
        }
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        fn_buf_json_string(out, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        fn_buf_putc(out, '"');
        fn_buf_base64(out, bd->data, bd->len);
        fn_buf_putc(out, '"');
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m) {
            encode_message(m, out);
        } else {
            fn_buf_puts(out, "{}");
        }
        break;
    }
    }
}

/* Map keys are JSON strings whatever their proto type. */
static void encode_map_key(const ProtobufCFieldDescriptor *kf, const void *p, fn_buf *out)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        encode_value(kf, p, out);
        return;
    }
    fn_buf tmp = FN_BUF_INIT;
    encode_value(kf, p, &tmp);
    if (tmp.len && tmp.data[0] == '"') {
        fn_buf_append(out, tmp.data, tmp.len);
    } else {
        fn_buf_json_string(out, tmp.data ? tmp.data : "", tmp.len);
    }
    fn_buf_free(&tmp);
}

/* Whether a singular field holds a value JSON should show (proto3: non-default). */
static int singular_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return MEMBER(uint32_t, msg, f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING)
        return MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) != 0;
    const char *p = (const char *)msg + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p != NULL;
    case PROTOBUF_C_TYPE_FLOAT: {
        float v = *(const float *)p;
        return v != 0.0f || signbit(v);
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v = *(const double *)p;
        return v != 0.0 || signbit(v);
    }
    default: {
        size_t sz = elem_size(f->type);
        static const char zero[8];
        return memcmp(p, zero, sz) != 0;
    }
    }
}

static void encode_message(const ProtobufCMessage *msg, fn_buf *out)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    int first = 1;
    fn_buf_putc(out, '{');
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        size_t count = 0;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            count = MEMBER(size_t, msg, f->quantifier_offset);
            if (count == 0) continue;
        } else if (!singular_present(msg, f)) {
            continue;
        }
        char name[256];
        json_name(f->name, name, sizeof name);
        if (!first) fn_buf_puts(out, ", ");
        first = 0;
        fn_buf_json_string(out, name, strlen(name));
        fn_buf_puts(out, ": ");
        const char *field = (const char *)msg + f->offset;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            encode_value(f, field, out);
            continue;
        }
        const char *arr = *(char *const *)field;
        if (is_map_field(f)) {
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            fn_buf_putc(out, '{');
            for (size_t j = 0; j < count; j++) {
                const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[j];
                if (j) fn_buf_puts(out, ", ");
                encode_map_key(&ed->fields[0], (const char *)e + ed->fields[0].offset, out);
                fn_buf_puts(out, ": ");
                encode_value(&ed->fields[1], (const char *)e + ed->fields[1].offset, out);
            }
            fn_buf_putc(out, '}');
            continue;
        }
        size_t sz = elem_size(f->type);
        fn_buf_putc(out, '[');
        for (size_t j = 0; j < count; j++) {
            if (j) fn_buf_puts(out, ", ");
            encode_value(f, arr + j * sz, out);
        }
        fn_buf_putc(out, ']');
    }
    fn_buf_putc(out, '}');
}

void fn_pbjson_encode(const ProtobufCMessage *msg, fn_buf *out)
{
    encode_message(msg, out);
}

/* ---- decoding ---------------------------------------------------------- */

/* The path of the value being decoded, for error messages ("features.feature[\"a\"]"). */
typedef struct path {
    char s[256];
    size_t len;
} path;

static size_t path_push(path *p, const char *fmt, const char *name)
{
    size_t old = p->len;
    int n = snprintf(p->s + p->len, sizeof p->s - p->len, fmt, name);
    if (n > 0) p->len += (size_t)n < sizeof p->s - p->len ? (size_t)n : sizeof p->s - p->len - 1;
    return old;
}

static size_t path_push_index(path *p, size_t i)
{
    size_t old = p->len;
    int n = snprintf(p->s + p->len, sizeof p->s - p->len, "[%zu]", i);
    if (n > 0) p->len += (size_t)n < sizeof p->s - p->len ? (size_t)n : sizeof p->s - p->len - 1;
    return old;
}

static void path_pop(path *p, size_t old)
{
    p->len = old;
    p->s[old] = '\0';
}

static const char *path_str(const path *p)
{
    return p->len ? p->s : "(message)";
}

typedef struct decoder {
    int flags;
    path path;
    fn_error *err;
} decoder;

static fn_status bad(decoder *dc, const char *what)
{
    return fn_error_set(dc->err, FN_ERR_INVALID, "%s: %s", path_str(&dc->path), what);
}

static fn_status decode_message(decoder *dc, const ProtobufCMessageDescriptor *d, json_t *obj,
                                ProtobufCMessage **out);

static fn_status get_int(decoder *dc, json_t *v, int is_signed, int64_t lo, int64_t hi,
                         uint64_t uhi, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (is_signed ? (x < lo || x > hi) : (x < 0 || (uint64_t)x > uhi))
            return bad(dc, "integer out of range");
        *out = (uint64_t)x;
        return FN_OK;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x != floor(x)) return bad(dc, "expected an integer, got a fraction");
        if (is_signed ? (x < (double)lo || x > (double)hi) : (x < 0 || x > (double)uhi))
            return bad(dc, "integer out of range");
        *out = is_signed ? (uint64_t)(int64_t)x : (uint64_t)x;
        return FN_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        if (!s[0] || s[0] == ' ') return bad(dc, "expected an integer string");
        if (is_signed) {
            long long x = strtoll(s, &end, 10);
            if (*end || errno) return bad(dc, "expected an integer string");
            if (x < lo || x > hi) return bad(dc, "integer out of range");
            *out = (uint64_t)x;
        } else {
            if (s[0] == '-') return bad(dc, "expected an unsigned integer");
            unsigned long long x = strtoull(s, &end, 10);
            if (*end || errno) return bad(dc, "expected an integer string");
            if (x > uhi) return bad(dc, "integer out of range");
            *out = x;
        }
        return FN_OK;
    }
    return bad(dc, "expected an integer");
}

static fn_status get_double(decoder *dc, json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return FN_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "NaN") == 0) {
            *out = NAN;
        } else if (strcmp(s, "Infinity") == 0) {
            *out = INFINITY;
        } else if (strcmp(s, "-Infinity") == 0) {
            *out = -INFINITY;
        } else {
            char *end;
            if (!s[0]) return bad(dc, "expected a number");
            *out = strtod(s, &end);
            if (*end) return bad(dc, "expected a number");
        }
        return FN_OK;
    }
    return bad(dc, "expected a number");
}

/* Decodes one scalar or message value of field f into the memory at p. */
static fn_status decode_value(decoder *dc, const ProtobufCFieldDescriptor *f, json_t *v, void *p)
{
    uint64_t u;
    fn_status st;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((st = get_int(dc, v, 1, INT32_MIN, INT32_MAX, 0, &u))) return st;
        *(int32_t *)p = (int32_t)(int64_t)u;
        return FN_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((st = get_int(dc, v, 0, 0, 0, UINT32_MAX, &u))) return st;
        *(uint32_t *)p = (uint32_t)u;
        return FN_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if ((st = get_int(dc, v, 1, INT64_MIN, INT64_MAX, 0, &u))) return st;
        *(int64_t *)p = (int64_t)u;
        return FN_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if ((st = get_int(dc, v, 0, 0, 0, UINT64_MAX, &u))) return st;
        *(uint64_t *)p = u;
        return FN_OK;
    case PROTOBUF_C_TYPE_FLOAT: {
        double d;
        if ((st = get_double(dc, v, &d))) return st;
        if (isfinite(d) && fabs(d) > 3.4028234663852886e38) return bad(dc, "float out of range");
        *(float *)p = (float)d;
        return FN_OK;
    }
    case PROTOBUF_C_TYPE_DOUBLE:
        return get_double(dc, v, (double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) return bad(dc, "expected true or false");
        *(protobuf_c_boolean *)p = json_is_true(v);
        return FN_OK;
    case PROTOBUF_C_TYPE_ENUM: {
        if (json_is_string(v)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, json_string_value(v));
            if (!ev) return bad(dc, "unknown enum value name");
            *(int *)p = ev->value;
            return FN_OK;
        }
        if ((st = get_int(dc, v, 1, INT32_MIN, INT32_MAX, 0, &u))) return st;
        *(int *)p = (int)(int64_t)u;
        return FN_OK;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v)) return bad(dc, "expected a string");
        size_t n = json_string_length(v);
        if (memchr(json_string_value(v), '\0', n)) return bad(dc, "string holds a NUL character");
        char *s = strdup(json_string_value(v));
        if (!s) return fn_error_set(dc->err, FN_ERR_NOMEM, "out of memory");
        *(char **)p = s;
        return FN_OK;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(v)) return bad(dc, "expected a base64 string");
        fn_buf b = FN_BUF_INIT;
        st = fn_base64_decode(json_string_value(v), json_string_length(v), &b);
        if (st != FN_OK) {
            fn_buf_free(&b);
            return st == FN_ERR_NOMEM ? fn_error_set(dc->err, st, "out of memory")
                                      : bad(dc, "invalid base64");
        }
        ProtobufCBinaryData *bd = p;
        bd->len = b.len;
        bd->data = b.len ? (uint8_t *)b.data : NULL;
        if (!b.len) fn_buf_free(&b);
        return FN_OK;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return decode_message(dc, f->descriptor, v, (ProtobufCMessage **)p);
    }
    return bad(dc, "unsupported field type");
}

static fn_status decode_map_key(decoder *dc, const ProtobufCFieldDescriptor *kf, const char *key,
                                void *p)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        char *s = strdup(key);
        if (!s) return fn_error_set(dc->err, FN_ERR_NOMEM, "out of memory");
        *(char **)p = s;
        return FN_OK;
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") && strcmp(key, "false")) return bad(dc, "map key must be a bool");
        *(protobuf_c_boolean *)p = strcmp(key, "true") == 0;
        return FN_OK;
    }
    json_t *s = json_string(key);
    if (!s) return bad(dc, "map key is not valid UTF-8");
    fn_status st = decode_value(dc, kf, s, p);
    json_decref(s);
    return st;
}

/* Allocates an initialised message of type d. */
static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m) d->message_init(m);
    return m;
}

static fn_status decode_map(decoder *dc, const ProtobufCFieldDescriptor *f, json_t *obj,
                            ProtobufCMessage *msg)
{
    if (!json_is_object(obj)) return bad(dc, "expected an object (map)");
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t n = json_object_size(obj);
    ProtobufCMessage **arr = calloc(n ? n : 1, sizeof *arr);
    if (!arr) return fn_error_set(dc->err, FN_ERR_NOMEM, "out of memory");
    MEMBER(void *, msg, f->offset) = arr;
    const char *key;
    json_t *val;
    fn_status st = FN_OK;
    json_object_foreach(obj, key, val)
    {
        size_t old = path_push(&dc->path, "[\"%s\"]", key);
        ProtobufCMessage *e = new_message(ed);
        if (!e) {
            st = fn_error_set(dc->err, FN_ERR_NOMEM, "out of memory");
            break;
        }
        arr[MEMBER(size_t, msg, f->quantifier_offset)++] = e;
        st = decode_map_key(dc, &ed->fields[0], key, (char *)e + ed->fields[0].offset);
        if (st == FN_OK && json_is_null(val)) st = bad(dc, "map value may not be null");
        if (st == FN_OK)
            st = decode_value(dc, &ed->fields[1], val, (char *)e + ed->fields[1].offset);
        if (st != FN_OK) break;
        path_pop(&dc->path, old);
    }
    return st;
}

static fn_status decode_repeated(decoder *dc, const ProtobufCFieldDescriptor *f, json_t *arr_json,
                                 ProtobufCMessage *msg)
{
    if (!json_is_array(arr_json)) return bad(dc, "expected an array");
    size_t n = json_array_size(arr_json), sz = elem_size(f->type);
    char *arr = calloc(n ? n : 1, sz);
    if (!arr) return fn_error_set(dc->err, FN_ERR_NOMEM, "out of memory");
    MEMBER(void *, msg, f->offset) = arr;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr_json, i);
        size_t old = path_push_index(&dc->path, i);
        if (json_is_null(v)) return bad(dc, "array element may not be null");
        fn_status st = decode_value(dc, f, v, arr + i * sz);
        /* Count the element only once it holds something free_unpacked may release. */
        if (st != FN_OK && f->type != PROTOBUF_C_TYPE_MESSAGE) return st;
        MEMBER(size_t, msg, f->quantifier_offset) = i + 1;
        if (st != FN_OK) return st;
        path_pop(&dc->path, old);
    }
    return FN_OK;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (f) return f;
    for (unsigned i = 0; i < d->n_fields; i++) {
        char name[256];
        json_name(d->fields[i].name, name, sizeof name);
        if (strcmp(name, key) == 0) return &d->fields[i];
    }
    return NULL;
}

static fn_status decode_fields(decoder *dc, const ProtobufCMessageDescriptor *d, json_t *obj,
                               ProtobufCMessage *msg)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        size_t old = path_push(&dc->path, dc->path.len ? ".%s" : "%s", key);
        if (!f) {
            if (dc->flags & FN_PBJSON_IGNORE_UNKNOWN) {
                path_pop(&dc->path, old);
                continue;
            }
            return fn_error_set(dc->err, FN_ERR_INVALID, "%s: unknown field of %s",
                                path_str(&dc->path), d->name);
        }
        if (json_is_null(val)) {
            path_pop(&dc->path, old);
            continue;
        }
        fn_status st;
        if (is_map_field(f)) {
            if (MEMBER(void *, msg, f->offset)) return bad(dc, "field given twice");
            st = decode_map(dc, f, val, msg);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (MEMBER(void *, msg, f->offset)) return bad(dc, "field given twice");
            st = decode_repeated(dc, f, val, msg);
        } else {
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t *which = &MEMBER(uint32_t, msg, f->quantifier_offset);
                if (*which != 0) return bad(dc, "more than one member of a oneof is set");
                /* Set the case first so free_unpacked releases what is decoded. */
                *which = f->id;
            } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                       f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
                MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
            }
            st = decode_value(dc, f, val, (char *)msg + f->offset);
        }
        if (st != FN_OK) return st;
        path_pop(&dc->path, old);
    }
    return FN_OK;
}

static fn_status decode_message(decoder *dc, const ProtobufCMessageDescriptor *d, json_t *obj,
                                ProtobufCMessage **out)
{
    if (!json_is_object(obj)) return bad(dc, "expected an object");
    ProtobufCMessage *msg = new_message(d);
    if (!msg) return fn_error_set(dc->err, FN_ERR_NOMEM, "out of memory");
    *out = msg; /* owned by the caller's tree from here, freed with it on error */
    return decode_fields(dc, d, obj, msg);
}

fn_status fn_pbjson_decode(const ProtobufCMessageDescriptor *desc, json_t *json, int flags,
                           ProtobufCMessage **out, fn_error *err)
{
    decoder dc = {.flags = flags, .err = err};
    dc.path.s[0] = '\0';
    ProtobufCMessage *msg = NULL;
    fn_status st = decode_message(&dc, desc, json, &msg);
    if (st != FN_OK) {
        if (msg) protobuf_c_message_free_unpacked(msg, NULL);
        return st;
    }
    *out = msg;
    return FN_OK;
}

fn_status fn_pbjson_parse(const ProtobufCMessageDescriptor *desc, const char *text, size_t n,
                          int flags, ProtobufCMessage **out, fn_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return fn_error_set(err, FN_ERR_INVALID, "invalid JSON at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    fn_status st = fn_pbjson_decode(desc, root, flags, out, err);
    json_decref(root);
    return st;
}
