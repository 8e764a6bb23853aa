/*
 * demo_movielens.c - reads MovieLens-100k for `funnel demo`, in the two
 * layouts it is found in:
 *
 *   RecBole atomic files: ml-100k.inter / .item / .user, UTF-8, TAB-separated,
 *     one header line of `name:type` columns (found by name, so their order
 *     does not matter), `token_seq` values space-separated.
 *   GroupLens's original files: u.data (TAB: user item rating timestamp),
 *     u.item (|: id, "title (year)", release date, video date, url, 19 genre
 *     flags), u.user (|: id, age, gender, occupation, zip). u.item is Latin-1
 *     in the original; a file that is not valid UTF-8 is read as Latin-1.
 *
 * Both give the same records: the title without its "(year)", the year as a
 * number, the genres by name. The catalog's placeholder row (item 267, title
 * "unknown", misspelt "unkonwn" by RecBole) keeps its id and genre but gets
 * no title and no year. Anything malformed is an error naming file and line.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/file.h"
#include "demo_data.h"

/* MovieLens files are a few MB; this only stops a wrong path from eating memory. */
#define MAX_FILE_BYTES ((size_t)1 << 30)
#define MAX_FIELDS     64

/* GroupLens's u.genre, in the order of u.item's flags. */
static const char *const grouplens_genres[19] = {
    "unknown",     "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",
    "Documentary", "Drama",  "Fantasy",   "Film-Noir", "Horror",     "Musical", "Mystery",
    "Romance",     "Sci-Fi", "Thriller",  "War",       "Western",
};

typedef struct field {
    const char *s;
    size_t n;
} field;

/* Walks the lines of a NUL-terminated buffer, counting from 1. */
typedef struct line_iter {
    const char *p, *end;
    uint32_t line;
} line_iter;

/* The next line without its "\n" or "\r\n"; 0 at the end. */
static int next_line(line_iter *it, field *out)
{
    if (it->p >= it->end) return 0;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *stop = nl ? nl : it->end;
    out->s = it->p;
    out->n = (size_t)(stop - it->p);
    if (out->n && out->s[out->n - 1] == '\r') out->n--;
    it->p = nl ? nl + 1 : it->end;
    it->line++;
    return 1;
}

/* Splits a line at sep into at most max fields; returns how many there are (may exceed max). */
static size_t split(field line, char sep, field *f, size_t max)
{
    size_t count = 0;
    const char *p = line.s, *end = line.s + line.n;
    for (;;) {
        const char *q = memchr(p, sep, (size_t)(end - p));
        const char *stop = q ? q : end;
        if (count < max) f[count] = (field){p, (size_t)(stop - p)};
        count++;
        if (!q) break;
        p = q + 1;
    }
    return count;
}

static int field_eq(field f, const char *s)
{
    return f.n == strlen(s) && memcmp(f.s, s, f.n) == 0;
}

/* An error at path:line, with the value shown (shortened) where the message has %.*s. */
static fn_status bad_line(fn_error *err, const char *path, uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static fn_status bad_line(fn_error *err, const char *path, uint32_t line, const char *fmt, ...)
{
    char msg[FN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fn_error_set(err, FN_ERR_INVALID, "%s: line %u: %s", path, line, msg);
}

/* How much of a bad value a message shows. */
static int shown(field f)
{
    return f.n > 40 ? 40 : (int)f.n;
}

/* A whole decimal number in [min, max]; the field is not NUL-terminated. */
static int parse_int(field f, int64_t min, int64_t max, int64_t *out)
{
    char tmp[32];
    if (f.n == 0 || f.n >= sizeof tmp) return 0;
    for (size_t i = 0; i < f.n; i++)
        if (!isdigit((unsigned char)f.s[i]) && !(i == 0 && f.s[i] == '-')) return 0;
    memcpy(tmp, f.s, f.n);
    tmp[f.n] = '\0';
    errno = 0;
    char *end;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end || v < min || v > max) return 0;
    *out = v;
    return 1;
}

/* A finite decimal number (RecBole writes `float` columns, e.g. "3" or "3.0"). */
static int parse_number(field f, double *out)
{
    char tmp[64];
    if (f.n == 0 || f.n >= sizeof tmp || isspace((unsigned char)f.s[0])) return 0;
    memcpy(tmp, f.s, f.n);
    tmp[f.n] = '\0';
    errno = 0;
    char *end;
    double v = strtod(tmp, &end);
    if (errno || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_id(field f, int64_t *out)
{
    return parse_int(f, 1, INT32_MAX, out);
}

static fn_status parse_rating(const char *path, uint32_t line, field fr, field ft, float *rating,
                              int64_t *ts, fn_error *err)
{
    double r, t;
    if (!parse_number(fr, &r) || r < 0 || r > 5)
        return bad_line(err, path, line, "rating '%.*s' is not a number from 0 to 5", shown(fr),
                        fr.s);
    /* 2^53: every whole number below it is exact in a double. */
    if (!parse_number(ft, &t) || t < 0 || t != floor(t) || t > 9007199254740992.0)
        return bad_line(err, path, line, "timestamp '%.*s' is not a whole number of seconds",
                        shown(ft), ft.s);
    *rating = (float)r;
    *ts = (int64_t)t;
    return FN_OK;
}

/* "unknown" (or RecBole's "unkonwn") marks the placeholder row: no value. */
static int is_placeholder(field f)
{
    return (f.n == 7 &&
            (strncasecmp(f.s, "unknown", 7) == 0 || strncasecmp(f.s, "unkonwn", 7) == 0));
}

/* A four-digit year. */
static int parse_year(field f, int64_t *out)
{
    return f.n == 4 && parse_int(f, 1000, 2999, out);
}

/* Trims spaces at both ends. */
static field trim(field f)
{
    while (f.n && f.s[0] == ' ') f.s++, f.n--;
    while (f.n && f.s[f.n - 1] == ' ') f.n--;
    return f;
}

/* When the title ends in "(YYYY)", removes it and returns the year; else 0. */
static int64_t title_year(field *title)
{
    field t = trim(*title);
    int64_t y;
    if (t.n < 6 || t.s[t.n - 1] != ')' || t.s[t.n - 6] != '(') return 0;
    if (!parse_year((field){t.s + t.n - 5, 4}, &y)) return 0;
    t.n -= 6;
    *title = trim(t);
    return y;
}

static fn_status set_title(fn_demo_data *d, const char *path, uint32_t line, fn_demo_item *it,
                           field title, fn_error *err)
{
    title = trim(title);
    if (title.n == 0 || is_placeholder(title)) return FN_OK;
    if (!fn_utf8_valid(title.s, title.n))
        return bad_line(err, path, line, "the title is not valid UTF-8");
    if (!(it->title = fn_demo_strdup(d, title.s, title.n)))
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return FN_OK;
}

static fn_status add_genre(fn_demo_data *d, const char *path, uint32_t line, fn_demo_item *it,
                           field g, fn_error *err)
{
    if (it->n_genres == FN_DEMO_MAX_GENRES)
        return bad_line(err, path, line, "more than %d genres", FN_DEMO_MAX_GENRES);
    if (!fn_utf8_valid(g.s, g.n)) return bad_line(err, path, line, "a genre is not valid UTF-8");
    if (!(it->genres[it->n_genres++] = fn_demo_strdup(d, g.s, g.n)))
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return FN_OK;
}

/* gender, occupation, zip code: short tokens, gender and occupation required. */
static fn_status set_user_strings(fn_demo_data *d, const char *path, uint32_t line, fn_demo_user *u,
                                  field gender, field occ, field zip, fn_error *err)
{
    gender = trim(gender), occ = trim(occ), zip = trim(zip);
    if (gender.n == 0) return bad_line(err, path, line, "gender is empty");
    if (occ.n == 0) return bad_line(err, path, line, "occupation is empty");
    if (!fn_utf8_valid(gender.s, gender.n) || !fn_utf8_valid(occ.s, occ.n) ||
        !fn_utf8_valid(zip.s, zip.n))
        return bad_line(err, path, line, "a value is not valid UTF-8");
    u->gender = fn_demo_strdup(d, gender.s, gender.n);
    u->occupation = fn_demo_strdup(d, occ.s, occ.n);
    u->zip_code = zip.n ? fn_demo_strdup(d, zip.s, zip.n) : NULL;
    if (!u->gender || !u->occupation || (zip.n && !u->zip_code))
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return FN_OK;
}

static fn_status read_file(const char *path, fn_buf *out, fn_error *err)
{
    fn_buf_reset(out);
    fn_status st = fn_file_read_all(path, MAX_FILE_BYTES, out, err);
    if (st != FN_OK) return st;
    if (out->len == 0) return fn_error_set(err, FN_ERR_INVALID, "%s: the file is empty", path);
    return FN_OK;
}

/* ---- RecBole atomic files ---- */

/* Column positions by name from a `name:type` header; -1 when absent. */
static fn_status recbole_header(const char *path, field line, const char *const *names,
                                size_t n_names, int *pos, size_t *n_cols, fn_error *err)
{
    field f[MAX_FIELDS];
    size_t n = split(line, '\t', f, MAX_FIELDS);
    if (n > MAX_FIELDS) return bad_line(err, path, 1, "more than %d columns", MAX_FIELDS);
    for (size_t k = 0; k < n_names; k++) pos[k] = -1;
    for (size_t i = 0; i < n; i++) {
        const char *colon = memchr(f[i].s, ':', f[i].n);
        if (!colon)
            return bad_line(
                err, path, 1,
                "header column '%.*s' is not name:type (is this a RecBole atomic file?)",
                shown(f[i]), f[i].s);
        field name = {f[i].s, (size_t)(colon - f[i].s)};
        for (size_t k = 0; k < n_names; k++)
            if (field_eq(name, names[k]) && pos[k] < 0) pos[k] = (int)i;
    }
    for (size_t k = 0; k < n_names; k++)
        if (pos[k] < 0) return bad_line(err, path, 1, "the header has no column '%s'", names[k]);
    *n_cols = n;
    return FN_OK;
}

/* Reads the header and checks each data line's field count; calls row() per line. */
typedef fn_status (*row_fn)(fn_demo_data *d, const char *path, uint32_t line, const field *f,
                            const int *pos, fn_error *err);

static fn_status recbole_read(fn_demo_data *d, const char *path, const char *const *names,
                              size_t n_names, row_fn row, fn_buf *buf, fn_error *err)
{
    fn_status st = read_file(path, buf, err);
    if (st != FN_OK) return st;
    line_iter it = {buf->data, buf->data + buf->len, 0};
    field line, f[MAX_FIELDS];
    int pos[8];
    size_t n_cols = 0;
    next_line(&it, &line);
    if ((st = recbole_header(path, line, names, n_names, pos, &n_cols, err)) != FN_OK) return st;
    while (next_line(&it, &line)) {
        if (line.n == 0) continue; /* a trailing empty line */
        size_t n = split(line, '\t', f, MAX_FIELDS);
        if (n != n_cols)
            return bad_line(err, path, it.line, "expected %zu TAB-separated fields, found %zu",
                            n_cols, n);
        if ((st = row(d, path, it.line, f, pos, err)) != FN_OK) return st;
    }
    return FN_OK;
}

static fn_status recbole_user(fn_demo_data *d, const char *path, uint32_t line, const field *f,
                              const int *pos, fn_error *err)
{
    fn_demo_user *u = fn_demo_add_user(d);
    if (!u) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    u->line = line;
    field id = f[pos[0]], age = f[pos[1]];
    if (!parse_id(id, &u->id))
        return bad_line(err, path, line, "user_id '%.*s' is not a positive integer", shown(id),
                        id.s);
    if (!parse_int(age, 1, 150, &u->age))
        return bad_line(err, path, line, "age '%.*s' is not a whole number from 1 to 150",
                        shown(age), age.s);
    return set_user_strings(d, path, line, u, f[pos[2]], f[pos[3]], f[pos[4]], err);
}

static fn_status recbole_item(fn_demo_data *d, const char *path, uint32_t line, const field *f,
                              const int *pos, fn_error *err)
{
    fn_demo_item *it = fn_demo_add_item(d);
    if (!it) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    it->line = line;
    field id = f[pos[0]], title = f[pos[1]], year = trim(f[pos[2]]), genres = f[pos[3]];
    if (!parse_id(id, &it->id))
        return bad_line(err, path, line, "item_id '%.*s' is not a positive integer", shown(id),
                        id.s);
    /* RecBole took the year from the title's last "(...)"; where that was not a year (item
     * 1412's "(V)") the title still ends in "(1995)". Otherwise the year stays unknown. */
    if (!parse_year(year, &it->year)) it->year = title_year(&title);
    fn_status st = set_title(d, path, line, it, title, err);
    if (st != FN_OK) return st;
    field g[FN_DEMO_MAX_GENRES + 1];
    size_t n = split(genres, ' ', g, FN_DEMO_MAX_GENRES + 1);
    if (n > FN_DEMO_MAX_GENRES + 1) n = FN_DEMO_MAX_GENRES + 1;
    for (size_t k = 0; k < n; k++)
        if (g[k].n && (st = add_genre(d, path, line, it, g[k], err)) != FN_OK) return st;
    return FN_OK;
}

static fn_status recbole_inter(fn_demo_data *d, const char *path, uint32_t line, const field *f,
                               const int *pos, fn_error *err)
{
    fn_demo_rating *r = fn_demo_add_rating(d);
    if (!r) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    r->line = line;
    field u = f[pos[0]], i = f[pos[1]];
    if (!parse_id(u, &r->user_id))
        return bad_line(err, path, line, "user_id '%.*s' is not a positive integer", shown(u), u.s);
    if (!parse_id(i, &r->item_id))
        return bad_line(err, path, line, "item_id '%.*s' is not a positive integer", shown(i), i.s);
    return parse_rating(path, line, f[pos[2]], f[pos[3]], &r->rating, &r->timestamp, err);
}

static fn_status load_recbole(const char *dir, fn_demo_data *d, fn_buf *buf, fn_error *err)
{
    static const char *const user_cols[] = {"user_id", "age", "gender", "occupation", "zip_code"};
    static const char *const item_cols[] = {"item_id", "movie_title", "release_year", "class"};
    static const char *const inter_cols[] = {"user_id", "item_id", "rating", "timestamp"};
    snprintf(d->users_file, sizeof d->users_file, "%s/ml-100k.user", dir);
    snprintf(d->items_file, sizeof d->items_file, "%s/ml-100k.item", dir);
    snprintf(d->ratings_file, sizeof d->ratings_file, "%s/ml-100k.inter", dir);
    snprintf(d->source, sizeof d->source, "MovieLens-100k (RecBole atomic files ml-100k.*)");
    fn_status st = recbole_read(d, d->users_file, user_cols, 5, recbole_user, buf, err);
    if (st == FN_OK) st = recbole_read(d, d->items_file, item_cols, 4, recbole_item, buf, err);
    if (st == FN_OK) st = recbole_read(d, d->ratings_file, inter_cols, 4, recbole_inter, buf, err);
    return st;
}

/* ---- GroupLens files ---- */

/* Reads a GroupLens file as UTF-8, converting from Latin-1 when it is not valid UTF-8. */
static fn_status read_grouplens(const char *path, fn_buf *out, fn_error *err)
{
    fn_status st = read_file(path, out, err);
    if (st != FN_OK || fn_utf8_valid(out->data, out->len)) return st;
    fn_buf conv = FN_BUF_INIT;
    for (size_t i = 0; i < out->len; i++) {
        unsigned char c = (unsigned char)out->data[i];
        if (c < 0x80) {
            fn_buf_putc(&conv, (char)c);
        } else {
            fn_buf_putc(&conv, (char)(0xC0 | (c >> 6)));
            fn_buf_putc(&conv, (char)(0x80 | (c & 0x3F)));
        }
    }
    if (conv.oom) {
        fn_buf_free(&conv);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory converting %s", path);
    }
    fn_buf_free(out);
    *out = conv;
    return FN_OK;
}

static fn_status load_grouplens(const char *dir, fn_demo_data *d, fn_buf *buf, fn_error *err)
{
    snprintf(d->users_file, sizeof d->users_file, "%s/u.user", dir);
    snprintf(d->items_file, sizeof d->items_file, "%s/u.item", dir);
    snprintf(d->ratings_file, sizeof d->ratings_file, "%s/u.data", dir);
    snprintf(d->source, sizeof d->source,
             "MovieLens-100k (GroupLens files u.data, u.item, u.user)");
    field line, f[MAX_FIELDS];
    line_iter it;
    fn_status st;

    const char *path = d->users_file;
    if ((st = read_grouplens(path, buf, err)) != FN_OK) return st;
    it = (line_iter){buf->data, buf->data + buf->len, 0};
    while (next_line(&it, &line)) {
        if (line.n == 0) continue;
        size_t n = split(line, '|', f, MAX_FIELDS);
        if (n != 5)
            return bad_line(err, path, it.line, "expected 5 |-separated fields, found %zu", n);
        int pos[5] = {0, 1, 2, 3, 4};
        if ((st = recbole_user(d, path, it.line, f, pos, err)) != FN_OK) return st;
    }

    path = d->items_file;
    if ((st = read_grouplens(path, buf, err)) != FN_OK) return st;
    it = (line_iter){buf->data, buf->data + buf->len, 0};
    while (next_line(&it, &line)) {
        if (line.n == 0) continue;
        size_t n = split(line, '|', f, MAX_FIELDS);
        if (n != 24)
            return bad_line(err, path, it.line, "expected 24 |-separated fields, found %zu", n);
        fn_demo_item *item = fn_demo_add_item(d);
        if (!item) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        item->line = it.line;
        if (!parse_id(f[0], &item->id))
            return bad_line(err, path, it.line, "movie id '%.*s' is not a positive integer",
                            shown(f[0]), f[0].s);
        field title = f[1], date = trim(f[2]);
        item->year = title_year(&title);
        /* Without "(YYYY)" in the title, the release date (dd-Mon-YYYY) has it. */
        if (!item->year && date.n >= 4) parse_year((field){date.s + date.n - 4, 4}, &item->year);
        if ((st = set_title(d, path, it.line, item, title, err)) != FN_OK) return st;
        for (size_t g = 0; g < 19; g++) {
            field flag = f[5 + g];
            if (!field_eq(flag, "0") && !field_eq(flag, "1"))
                return bad_line(err, path, it.line, "genre flag %zu is '%.*s', not 0 or 1", g,
                                shown(flag), flag.s);
            if (flag.s[0] == '1') {
                field name = {grouplens_genres[g], strlen(grouplens_genres[g])};
                if ((st = add_genre(d, path, it.line, item, name, err)) != FN_OK) return st;
            }
        }
    }

    path = d->ratings_file;
    if ((st = read_grouplens(path, buf, err)) != FN_OK) return st;
    it = (line_iter){buf->data, buf->data + buf->len, 0};
    while (next_line(&it, &line)) {
        if (line.n == 0) continue;
        size_t n = split(line, '\t', f, MAX_FIELDS);
        if (n != 4)
            return bad_line(err, path, it.line, "expected 4 TAB-separated fields, found %zu", n);
        int pos[4] = {0, 1, 2, 3};
        if ((st = recbole_inter(d, path, it.line, f, pos, err)) != FN_OK) return st;
    }
    return FN_OK;
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

fn_status fn_demo_load_movielens(const char *dir, fn_demo_data *d, fn_error *err)
{
    if (access(dir, F_OK) != 0)
        return fn_error_set(err, errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO,
                            "cannot read MovieLens data folder %s: %s", dir, strerror(errno));
    snprintf(d->data_dir, sizeof d->data_dir, "%s", dir);
    fn_buf buf = FN_BUF_INIT;
    fn_status st;
    if (exists(dir, "ml-100k.inter")) {
        st = load_recbole(dir, d, &buf, err);
    } else if (exists(dir, "u.data")) {
        st = load_grouplens(dir, d, &buf, err);
    } else {
        st = fn_error_set(err, FN_ERR_NOT_FOUND,
                          "%s holds no MovieLens-100k: expected ml-100k.inter, .item and .user "
                          "(RecBole) or u.data, u.item and u.user (GroupLens)",
                          dir);
    }
    fn_buf_free(&buf);
    return st;
}
