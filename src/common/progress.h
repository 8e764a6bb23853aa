/*
 * progress.h - a one-line progress bar for long commands. It draws on stderr
 * only when stderr is a terminal, at most ten times a second, showing the
 * count, the rate per second and, when the total is known, a bar and the ETA.
 */
#ifndef FN_PROGRESS_H
#define FN_PROGRESS_H

#include <stdint.h>

typedef struct fn_progress fn_progress;

/* label: what is counted ("records"); total: 0 when unknown. Never fails: NULL disables. */
fn_progress *fn_progress_new(const char *label, uint64_t total);
/* Sets the count done so far; extra is an optional suffix ("loss 0.4312"), may be NULL. */
void fn_progress_update(fn_progress *p, uint64_t done, const char *extra);
/* Draws the final line and frees p. Safe on NULL. */
void fn_progress_finish(fn_progress *p);

#endif
