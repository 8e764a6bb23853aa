/*
 * log.h - leveled logging to stderr. The level comes from FUNNEL_LOG
 * (error, warn, info, debug; default info). Tests install a hook to fail on
 * any error log.
 */
#ifndef FN_LOG_H
#define FN_LOG_H

typedef enum fn_log_level {
    FN_LOG_ERROR = 0,
    FN_LOG_WARN = 1,
    FN_LOG_INFO = 2,
    FN_LOG_DEBUG = 3,
} fn_log_level;

typedef void (*fn_log_hook)(fn_log_level level, const char *msg, void *ctx);

void fn_log(fn_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fn_log_set_level(fn_log_level level);
/* Replaces the stderr writer (NULL restores it). */
void fn_log_set_hook(fn_log_hook hook, void *ctx);

#define fn_log_error(...) fn_log(FN_LOG_ERROR, __VA_ARGS__)
#define fn_log_warn(...)  fn_log(FN_LOG_WARN, __VA_ARGS__)
#define fn_log_info(...)  fn_log(FN_LOG_INFO, __VA_ARGS__)
#define fn_log_debug(...) fn_log(FN_LOG_DEBUG, __VA_ARGS__)

#endif
