/* clock.h - monotonic and wall time. */
#ifndef FN_CLOCK_H
#define FN_CLOCK_H

#include <stdint.h>

/* Monotonic nanoseconds, for durations. */
uint64_t fn_now_ns(void);
/* Unix time in milliseconds, for versions and timestamps. */
int64_t fn_wall_ms(void);

#endif
