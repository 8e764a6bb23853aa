/*
 * fuzz_svmrank.c - the svmrank/LETOR list reader, with and without a group
 * file, and the ranking metrics over whatever lists it accepts. Input: one
 * byte of flags (bit 0: a group file follows the first NUL; bits 1-7: the
 * min_features widening), then the text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rerank/rerank.h"

static int write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* The reader takes paths: each input goes to a private folder, removed at exit. */
static char dir[64];

static void remove_dir(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/lists", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lists.q", dir);
    unlink(p);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-svmrank-%d", (int)getpid());
        mkdir(dir, 0700);
        atexit(remove_dir);
    }
    char path[96], query[104];
    snprintf(path, sizeof path, "%s/lists", dir);
    snprintf(query, sizeof query, "%s/lists.q", dir);
    const uint8_t flags = data[0];
    const uint8_t *text = data + 1;
    size_t n = size - 1, qn = 0;
    const uint8_t *qtext = NULL;
    if (flags & 1) {
        const uint8_t *nul = memchr(text, 0, n);
        if (nul) {
            qtext = nul + 1;
            qn = n - (size_t)(qtext - text);
            n = (size_t)(nul - text);
        }
    }
    if (!write_file(path, text, n)) return 0;
    if (qtext && !write_file(query, qtext, qn)) return 0;
    fn_listset *d = NULL;
    fn_error err;
    if (fn_listset_read_svmrank(path, qtext ? query : NULL, flags >> 1, &d, &err) == FN_OK) {
        float *s = malloc((d->n_items ? d->n_items : 1) * sizeof *s);
        if (s) {
            for (size_t i = 0; i < d->n_items; i++)
                s[i] = d->n_features ? d->features[i * d->n_features] : (float)i;
            fn_rank_metrics m;
            fn_listset_metrics(d, s, &m);
            free(s);
        }
        fn_listset_free(d);
    }
    return 0;
}
