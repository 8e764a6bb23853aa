/* ffm.c - being written. */
#include "rank_impl.h"

static fn_status unsupported(fn_error *err)
{
    return fn_error_set(err, FN_ERR_UNSUPPORTED, "ffm: not implemented yet");
}

static fn_status init(fn_model *m, fn_error *err)
{
    (void)m;
    (void)err;
    return FN_OK;
}

static fn_status train(fn_model *m, const fn_train_options *o, const fn_dataset *t,
                       const fn_dataset *v, fn_train_report *r, fn_error *err)
{
    (void)m, (void)o, (void)t, (void)v, (void)r;
    return unsupported(err);
}

static fn_status predict(const fn_model *m, const fn_dataset *d, size_t r0, size_t n, float *out,
                         fn_error *err)
{
    (void)m, (void)d, (void)r0, (void)n, (void)out;
    return unsupported(err);
}

static fn_status score(const fn_model *m, const fn_score_request *q, float *out, fn_error *err)
{
    (void)m, (void)q, (void)out;
    return unsupported(err);
}

static fn_status save(const fn_model *m, fn_safetensors_writer *w, fn_error *err)
{
    (void)m, (void)w;
    return unsupported(err);
}

static fn_status load(fn_model *m, const fn_safetensors *st, fn_error *err)
{
    (void)m, (void)st;
    return unsupported(err);
}

static void release(fn_model *m)
{
    (void)m;
}

const fn_model_ops fn_ffm_ops = {.kind = FN_MODEL_FFM,
                                 .predict_in_parallel = 1,
                                 .init = init,
                                 .train = train,
                                 .predict = predict,
                                 .score = score,
                                 .save = save,
                                 .load = load,
                                 .free = release};
