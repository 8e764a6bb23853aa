/*
 * fuzz_pbjson.c - the generic proto3 JSON parser on the RPC request message,
 * which reads untrusted bodies; whatever parses is printed again.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "funnel/v1/funnel.pb-c.h"
#include "proto/pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m;
    fn_error err;
    if (fn_pbjson_parse(&funnel__v1__rank_request__descriptor, (const char *)data, size, 0, &m,
                        &err) != FN_OK)
        return 0;
    fn_buf b = FN_BUF_INIT;
    fn_pbjson_encode(m, &b);
    fn_buf_free(&b);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
