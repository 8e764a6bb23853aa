/*
 * pbjson.h - the proto3 JSON mapping, done generically from protobuf-c
 * descriptors, so every message of proto/ (tf.Example, the RPC messages) is
 * printed and parsed by one piece of code.
 *
 * Output matches Python's google.protobuf.json_format.MessageToJson(msg,
 * indent=None): lowerCamelCase names, fields in field-number order, default
 * values omitted, 64-bit integers as strings, bytes as base64, floats in their
 * shortest round-trip form, separators ", " and ": ".
 */
#ifndef FN_PBJSON_H
#define FN_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "common/buf.h"
#include "common/status.h"

/* Appends msg as one line of proto3 JSON. */
void fn_pbjson_encode(const ProtobufCMessage *msg, fn_buf *out);

enum {
    /* Skip fields the message does not have instead of failing. */
    FN_PBJSON_IGNORE_UNKNOWN = 1 << 0,
};

/*
 * Builds a message of type desc from a parsed JSON object. Accepts both the
 * JSON names and the proto field names, integers as numbers or strings, floats
 * as numbers or "NaN"/"Infinity"/"-Infinity", enums by name or number, bytes as
 * standard or URL-safe base64, and null for "not set". An error names the
 * field path and what is wrong. Free *out with protobuf_c_message_free_unpacked(*out, NULL).
 */
fn_status fn_pbjson_decode(const ProtobufCMessageDescriptor *desc, json_t *json, int flags,
                           ProtobufCMessage **out, fn_error *err);

/* Parses JSON text (n bytes) and decodes it as above. */
fn_status fn_pbjson_parse(const ProtobufCMessageDescriptor *desc, const char *text, size_t n,
                          int flags, ProtobufCMessage **out, fn_error *err);

#endif
