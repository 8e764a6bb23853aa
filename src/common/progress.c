/* progress.c - terminal progress bar (silent when stderr is not a terminal). */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

struct fn_progress {
    char label[32];
    uint64_t total;
    uint64_t done;
    uint64_t start_ns;
    uint64_t last_draw_ns;
    char extra[64];
};

fn_progress *fn_progress_new(const char *label, uint64_t total)
{
    if (!isatty(STDERR_FILENO)) return NULL;
    fn_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->start_ns = fn_now_ns();
    return p;
}

static void draw(fn_progress *p, uint64_t now)
{
    double secs = (double)(now - p->start_ns) / 1e9;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    char line[256];
    int n;
    if (p->total) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1) frac = 1;
        char bar[31];
        int filled = (int)(frac * 30);
        memset(bar, '#', (size_t)filled);
        memset(bar + filled, '.', (size_t)(30 - filled));
        bar[30] = '\0';
        double eta =
            rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate : 0;
        n = snprintf(line, sizeof line, "\r[%s] %3.0f%% %llu/%llu %s %.0f/s eta %.0fs %s", bar,
                     frac * 100, (unsigned long long)p->done, (unsigned long long)p->total,
                     p->label, rate, eta, p->extra);
    } else {
        n = snprintf(line, sizeof line, "\r%llu %s %.0f/s %.1fs %s", (unsigned long long)p->done,
                     p->label, rate, secs, p->extra);
    }
    if (n > 0) {
        fputs(line, stderr);
        fputs("\033[K", stderr);
        fflush(stderr);
    }
    p->last_draw_ns = now;
}

void fn_progress_update(fn_progress *p, uint64_t done, const char *extra)
{
    if (!p) return;
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    uint64_t now = fn_now_ns();
    if (now - p->last_draw_ns >= 100000000u) draw(p, now);
}

void fn_progress_finish(fn_progress *p)
{
    if (!p) return;
    draw(p, fn_now_ns());
    fputc('\n', stderr);
    free(p);
}
