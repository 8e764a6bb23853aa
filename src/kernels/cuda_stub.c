/* cuda_stub.c - the CUDA backend's entry point in builds without CUDA. */
#include "backend.h"

fn_status fn_backend_cuda_new(int device, fn_backend **out, fn_error *err)
{
    (void)device, (void)out;
    return fn_error_set(err, FN_ERR_UNSUPPORTED, "this funnel was built without its CUDA backend");
}
