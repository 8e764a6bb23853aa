/*
 * check_server.c - funneld's worker pool and metrics, without sockets: jobs
 * run on worker threads and complete on the loop thread; a full queue refuses
 * at once; shutdown cancels queued jobs, lets the running one finish and
 * completes every job exactly once; counters updated from many threads add
 * up, and /metrics' text has the series and histogram shape Prometheus
 * expects.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "funnel/v1/funnel.pb-c.h"
#include "server/server_impl.h"

static fn_server *new_server(const char *workers, const char *queue)
{
    char *argv[] = {"funneld", "--workers", (char *)workers, "--queue", (char *)queue, NULL};
    fn_server_config cfg;
    fn_server_action action;
    fn_error err = {0};
    ck_assert_msg(fn_server_config_parse(5, argv, &cfg, &action, &err) == FN_OK, "%s", err.msg);
    fn_server *s = NULL;
    ck_assert_msg(fn_server_new(&cfg, &s, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_server_start_workers(s, &err) == FN_OK, "%s", err.msg);
    return s;
}

/* ---- jobs ---- */

/* A gate a job's run() waits at, so a test controls when workers are busy. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_waiting;

static void gate_reset(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = gate_waiting = 0;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Waits until n runs are held at the gate. */
static void gate_wait_for(int n)
{
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&gate_mu);
        int w = gate_waiting;
        pthread_mutex_unlock(&gate_mu);
        if (w >= n) return;
        usleep(1000);
    }
    ck_abort_msg("no job reached the gate");
}

typedef struct test_job {
    fn_job job;
    int gated;
    pthread_t loop, ran_on, done_on;
    int ran, done, cancelled;
} test_job;

static atomic_int n_done;

static void run_test_job(fn_server *s, fn_job *job)
{
    (void)s;
    test_job *t = (test_job *)job;
    t->ran_on = pthread_self();
    t->ran++;
    if (t->gated) {
        pthread_mutex_lock(&gate_mu);
        gate_waiting++;
        while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
        pthread_mutex_unlock(&gate_mu);
    }
}

static void done_test_job(fn_server *s, fn_job *job)
{
    (void)s;
    test_job *t = (test_job *)job;
    t->done_on = pthread_self();
    t->done++;
    t->cancelled = job->cancelled;
    atomic_fetch_add(&n_done, 1);
}

static void init_job(test_job *t, int gated)
{
    memset(t, 0, sizeof *t);
    t->job.run = run_test_job;
    t->job.done = done_test_job;
    t->gated = gated;
    t->loop = pthread_self();
}

/* Turns the loop until n jobs completed (done() runs from the loop's notify event). */
static void loop_until(fn_server *s, int n)
{
    for (int i = 0; i < 5000 && atomic_load(&n_done) < n; i++)
        event_base_loop(s->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    ck_assert_int_eq(atomic_load(&n_done), n);
}

START_TEST(test_jobs_run_on_workers)
{
    atomic_store(&n_done, 0);
    fn_server *s = new_server("3", "64");
    ck_assert_int_eq(fn_workers_threads(s), 3);
    enum { N = 50 };
    test_job jobs[N];
    for (int i = 0; i < N; i++) {
        init_job(&jobs[i], 0);
        ck_assert_int_eq(fn_workers_submit(s, &jobs[i].job), 0);
    }
    loop_until(s, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(jobs[i].ran, 1);
        ck_assert_int_eq(jobs[i].done, 1);
        ck_assert_int_eq(jobs[i].cancelled, 0);
        ck_assert(!pthread_equal(jobs[i].ran_on, jobs[i].loop));
        ck_assert(pthread_equal(jobs[i].done_on, jobs[i].loop));
    }
    ck_assert_uint_eq(fn_workers_queued(s), 0);
    fn_server_free(s);
}
END_TEST

START_TEST(test_full_queue_refuses)
{
    atomic_store(&n_done, 0);
    gate_reset();
    fn_server *s = new_server("1", "2");
    test_job busy, q1, q2, extra;
    init_job(&busy, 1);
    init_job(&q1, 0);
    init_job(&q2, 0);
    init_job(&extra, 0);
    ck_assert_int_eq(fn_workers_submit(s, &busy.job), 0);
    gate_wait_for(1); /* the only worker is held */
    ck_assert_int_eq(fn_workers_submit(s, &q1.job), 0);
    ck_assert_int_eq(fn_workers_submit(s, &q2.job), 0);
    ck_assert_uint_eq(fn_workers_queued(s), 2);
    ck_assert_int_eq(fn_workers_submit(s, &extra.job), -1);
    gate_release();
    loop_until(s, 3);
    ck_assert_int_eq(extra.ran + extra.done, 0);
    /* room again once the queue drained */
    ck_assert_int_eq(fn_workers_submit(s, &extra.job), 0);
    loop_until(s, 4);
    ck_assert_int_eq(extra.done, 1);
    fn_server_free(s);
}
END_TEST

static void *release_later(void *arg)
{
    (void)arg;
    usleep(50 * 1000);
    gate_release();
    return NULL;
}

START_TEST(test_stop_cancels_queued)
{
    atomic_store(&n_done, 0);
    gate_reset();
    fn_server *s = new_server("1", "8");
    test_job busy, queued[3];
    init_job(&busy, 1);
    ck_assert_int_eq(fn_workers_submit(s, &busy.job), 0);
    gate_wait_for(1);
    for (int i = 0; i < 3; i++) {
        init_job(&queued[i], 0);
        ck_assert_int_eq(fn_workers_submit(s, &queued[i].job), 0);
    }
    pthread_t th;
    pthread_create(&th, NULL, release_later, NULL);
    fn_workers_stop(s); /* waits for the running job, which the helper releases */
    pthread_join(th, NULL);
    ck_assert_int_eq(atomic_load(&n_done), 4);
    ck_assert_int_eq(busy.ran, 1);
    ck_assert_int_eq(busy.cancelled, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(queued[i].ran, 0);
        ck_assert_int_eq(queued[i].done, 1);
        ck_assert_int_eq(queued[i].cancelled, 1);
    }
    ck_assert_int_eq(fn_workers_threads(s), 0);
    init_job(&busy, 0);
    ck_assert_int_eq(fn_workers_submit(s, &busy.job), -1); /* stopped: refused */
    fn_server_free(s);
}
END_TEST

/* ---- metrics ---- */

static double value_of(const char *text, const char *series)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = strstr(text, key);
    if (!p) return -1;
    return strtod(p + strlen(key), NULL);
}

typedef struct hammer_arg {
    fn_metrics *m;
    int n;
} hammer_arg;

static void *hammer(void *arg)
{
    hammer_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        fn_metrics_request(a->m, FN_TRANSPORT_HTTP, FN_METHOD_RANK, i % 10 ? 200 : 503,
                           (uint64_t)(i % 4) * 1000000); /* 0, 1, 2, 3 ms */
        fn_metrics_request(a->m, FN_TRANSPORT_GRPC, fn_method_of("/funnel.v1.Ranking/Rank"),
                           i % 5 ? 0 : 8, 100000);
    }
    return NULL;
}

START_TEST(test_metrics_counters_and_text)
{
    fn_server *s = new_server("2", "16");
    enum { THREADS = 8, EACH = 5000 };
    pthread_t th[THREADS];
    hammer_arg a = {s->metrics, EACH};
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, hammer, &a);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);

    Funnel__V1__StageTiming t[3];
    Funnel__V1__StageTiming *tp[3] = {&t[0], &t[1], &t[2]};
    const char *names[3] = {"recall", "rank", "page"};
    for (int i = 0; i < 3; i++) {
        funnel__v1__stage_timing__init(&t[i]);
        t[i].stage = (char *)names[i];
        t[i].millis = 0.3 * (i + 1);
        t[i].candidates = i == 2 ? 10 : 300;
    }
    Funnel__V1__RankResponse resp = FUNNEL__V1__RANK_RESPONSE__INIT;
    resp.timings = tp;
    resp.n_timings = 3;
    fn_metrics_rank_response(s->metrics, &resp);

    fn_buf out = FN_BUF_INIT;
    fn_metrics_render(s, &out);
    ck_assert(!out.oom);
    const char *txt = out.data;
    const double n = THREADS * EACH;
    ck_assert_double_eq(value_of(txt, "funnel_requests_total{transport=\"http\",method=\"Rank\"}"),
                        n);
    ck_assert_double_eq(value_of(txt, "funnel_requests_total{transport=\"grpc\",method=\"Rank\"}"),
                        n);
    ck_assert_double_eq(value_of(txt, "funnel_requests_total{transport=\"grpc\",method=\"Check\"}"),
                        0);
    ck_assert_double_eq(
        value_of(txt, "funnel_request_errors_total{transport=\"http\",code=\"503\"}"), n / 10);
    ck_assert_double_eq(
        value_of(txt,
                 "funnel_request_errors_total{transport=\"grpc\",code=\"RESOURCE_EXHAUSTED\"}"),
        n / 5);
    ck_assert_ptr_null(strstr(txt, "code=\"200\""));
    ck_assert_ptr_null(strstr(txt, "code=\"OK\""));
    /* cumulative buckets: 0 ms and 0.1 ms fall in le=0.0005, 1 ms in le=0.001, ... */
    ck_assert_double_eq(
        value_of(txt, "funnel_request_duration_seconds_bucket{method=\"Rank\",le=\"0.0005\"}"),
        n + n / 4);
    ck_assert_double_eq(
        value_of(txt, "funnel_request_duration_seconds_bucket{method=\"Rank\",le=\"0.001\"}"),
        n + n / 2);
    ck_assert_double_eq(
        value_of(txt, "funnel_request_duration_seconds_bucket{method=\"Rank\",le=\"+Inf\"}"),
        2 * n);
    ck_assert_double_eq(value_of(txt, "funnel_request_duration_seconds_count{method=\"Rank\"}"),
                        2 * n);
    ck_assert_double_eq_tol(value_of(txt, "funnel_request_duration_seconds_sum{method=\"Rank\"}"),
                            n / 4 * (0.001 + 0.002 + 0.003) + n * 0.0001, 1e-6);
    ck_assert_double_eq(value_of(txt, "funnel_stage_duration_seconds_count{stage=\"rank\"}"), 1);
    ck_assert_double_eq(
        value_of(txt, "funnel_stage_duration_seconds_bucket{stage=\"rank\",le=\"0.0005\"}"), 0);
    ck_assert_double_eq(
        value_of(txt, "funnel_stage_duration_seconds_bucket{stage=\"rank\",le=\"0.001\"}"), 1);
    ck_assert_double_eq(value_of(txt, "funnel_stage_candidates_sum{stage=\"recall\"}"), 300);
    ck_assert_double_eq(value_of(txt, "funnel_stage_candidates_bucket{stage=\"page\",le=\"10\"}"),
                        1);
    ck_assert_double_eq(value_of(txt, "funnel_workers"), 2);
    ck_assert_double_eq(value_of(txt, "funnel_queue_depth"), 0);
    ck_assert_double_eq(value_of(txt, "funnel_ready"), 0);
    ck_assert_ptr_nonnull(strstr(txt, "# TYPE funnel_request_duration_seconds histogram\n"));
    /* every line a comment or `name{labels} value` */
    for (const char *line = txt; *line;) {
        const char *end = strchr(line, '\n');
        ck_assert_ptr_nonnull(end);
        if (*line != '#') {
            const char *sp = memchr(line, ' ', (size_t)(end - line));
            ck_assert_ptr_nonnull(sp);
            char *num_end;
            strtod(sp + 1, &num_end);
            ck_assert_msg(num_end == end, "%.*s", (int)(end - line), line);
        }
        line = end + 1;
    }
    fn_buf_free(&out);
    fn_server_free(s);
}
END_TEST

START_TEST(test_method_of)
{
    ck_assert_int_eq(fn_method_of("/funnel.v1.Ranking/Rank"), FN_METHOD_RANK);
    ck_assert_int_eq(fn_method_of("/funnel.v1.Ranking/Suggest"), FN_METHOD_SUGGEST);
    ck_assert_int_eq(fn_method_of("/funnel.v1.Ranking/Encode"), FN_METHOD_ENCODE);
    ck_assert_int_eq(fn_method_of("/grpc.health.v1.Health/Check"), FN_METHOD_CHECK);
    ck_assert_int_eq(fn_method_of("/funnel.v1.Ranking/Check"), FN_METHOD_UNKNOWN);
    ck_assert_int_eq(fn_method_of("/other.Service/Rank"), FN_METHOD_UNKNOWN);
    ck_assert_int_eq(fn_method_of(""), FN_METHOD_UNKNOWN);
    ck_assert_int_eq(fn_method_of(NULL), FN_METHOD_UNKNOWN);
}
END_TEST

Suite *server_suite(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("workers");
    tcase_add_test(tc, test_jobs_run_on_workers);
    tcase_add_test(tc, test_full_queue_refuses);
    tcase_add_test(tc, test_stop_cancels_queued);
    suite_add_tcase(s, tc);
    tc = tcase_create("metrics");
    tcase_add_test(tc, test_method_of);
    tcase_add_test(tc, test_metrics_counters_and_text);
    suite_add_tcase(s, tc);
    return s;
}
