/* log.c - leveled stderr logging with a test hook. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_level = -1;
static fn_log_hook g_hook;
static void *g_hook_ctx;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(fn_log_level l)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    return names[l];
}

static int current_level(void)
{
    if (g_level >= 0) return g_level;
    const char *env = getenv("FUNNEL_LOG");
    int level = FN_LOG_INFO;
    if (env) {
        for (int i = FN_LOG_ERROR; i <= FN_LOG_DEBUG; i++)
            if (strcmp(env, level_name((fn_log_level)i)) == 0) level = i;
    }
    g_level = level;
    return level;
}

void fn_log_set_level(fn_log_level level)
{
    g_level = (int)level;
}

void fn_log_set_hook(fn_log_hook hook, void *ctx)
{
    pthread_mutex_lock(&g_lock);
    g_hook = hook;
    g_hook_ctx = ctx;
    pthread_mutex_unlock(&g_lock);
}

void fn_log(fn_log_level level, const char *fmt, ...)
{
    if ((int)level > current_level()) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_lock);
    if (g_hook) {
        g_hook(level, msg, g_hook_ctx);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                level_name(level), msg);
    }
    pthread_mutex_unlock(&g_lock);
}
