/*
 * demo_synthetic.c - a synthetic catalog for `funnel demo` when no MovieLens
 * data is at hand: users, movies and ratings with MovieLens's fields and
 * value sets (the same genders, occupations and genres), so the same
 * feature-column spec and the same pipeline apply.
 *
 * The ratings carry signal a model can learn: each user's taste for a genre
 * is a sum of effects of their occupation, gender and age group plus a
 * personal part; a rating is 3.6 + the user's mean taste over the movie's
 * genres + the movie's quality + noise, rounded into 1..5. Popular movies
 * (a Zipf-like weight) are rated more often.
 *
 * Everything comes from one splitmix64 stream seeded by --seed and uses only
 * integer and basic floating-point arithmetic (no libm transcendental
 * functions), so a seed gives byte-identical output on any machine.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_data.h"

enum {
    N_USERS = 600,
    N_ITEMS = 1000,
    MIN_RATINGS = 20, /* per user, as in MovieLens-100k */
    MAX_EXTRA = 180,  /* a few users rate up to MIN_RATINGS + MAX_EXTRA */
    N_AGE_GROUPS = 5,
};

/* MovieLens-100k's occupations, with how many of its users hold each (sampling weights). */
static const struct {
    const char *name;
    int weight;
} occupations[] = {
    {"administrator", 79}, {"artist", 28},        {"doctor", 7},      {"educator", 95},
    {"engineer", 67},      {"entertainment", 18}, {"executive", 32},  {"healthcare", 16},
    {"homemaker", 7},      {"lawyer", 12},        {"librarian", 51},  {"marketing", 26},
    {"none", 9},           {"other", 105},        {"programmer", 66}, {"retired", 14},
    {"salesman", 12},      {"scientist", 31},     {"student", 196},   {"technician", 27},
    {"writer", 45},
};
#define N_OCC ((int)(sizeof occupations / sizeof occupations[0]))

/* MovieLens's genres (without "unknown"), with how many of its movies carry each. */
static const struct {
    const char *name;
    int weight;
} genres[] = {
    {"Action", 251}, {"Adventure", 135}, {"Animation", 42},   {"Children's", 122},
    {"Comedy", 505}, {"Crime", 109},     {"Documentary", 50}, {"Drama", 725},
    {"Fantasy", 22}, {"Film-Noir", 24},  {"Horror", 92},      {"Musical", 56},
    {"Mystery", 61}, {"Romance", 247},   {"Sci-Fi", 101},     {"Thriller", 251},
    {"War", 71},     {"Western", 27},
};
#define N_GENRES ((int)(sizeof genres / sizeof genres[0]))

/* Title words; a few non-ASCII ones so UTF-8 titles are exercised as with real data. */
static const char *const adjectives[] = {
    "Silent", "Last", "Broken", "Golden",  "Hidden", "Lonely",  "Wild",     "Dark",
    "Little", "Lost", "Secret", "Crimson", "Frozen", "Distant", "Electric", "Quiet",
};
static const char *const nouns[] = {
    "River", "Summer", "Highway", "Garden",  "Planet", "Detective", "Café",   "Señor",
    "Noël",  "Mirror", "Harbor",  "Kingdom", "Circus", "Train",     "Zürich", "Dream",
};

/* splitmix64: tiny, fast, and well mixed even for seeds 0, 1, 2. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n). */
static uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Approximately standard normal (Irwin-Hall: 12 uniforms), without libm. */
static double rng_normal(rng *r)
{
    double s = 0;
    for (int i = 0; i < 12; i++) s += rng_unit(r);
    return s - 6.0;
}

/* Index drawn with probability proportional to weights[i]; cum holds their running sums. */
static int pick_weighted(rng *r, const int *cum, int n)
{
    uint32_t x = rng_below(r, (uint32_t)cum[n - 1]);
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if ((int)x < cum[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

static int age_group(int64_t age)
{
    return age < 18 ? 0 : age < 25 ? 1 : age < 35 ? 2 : age < 50 ? 3 : 4;
}

/* Everything the generator needs besides the output, freed in one place. */
typedef struct synth {
    double occ_taste[N_OCC][N_GENRES];
    double gender_taste[2][N_GENRES];
    double age_taste[N_AGE_GROUPS][N_GENRES];
    double quality[N_ITEMS];
    double pop_cum[N_ITEMS]; /* running sums of popularity weights */
    int occ_cum[N_OCC], genre_cum[N_GENRES];
    unsigned char item_genres[N_ITEMS][N_GENRES];
    int n_item_genres[N_ITEMS];
    int rated_by[N_ITEMS]; /* the last user (index + 1) who rated the item */
} synth;

static fn_status make_users(fn_demo_data *d, synth *s, rng *r, fn_error *err)
{
    for (int u = 0; u < N_USERS; u++) {
        fn_demo_user *user = fn_demo_add_user(d);
        if (!user) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        user->id = u + 1;
        user->line = (uint32_t)u + 1;
        double age = 33 + 11 * rng_normal(r);
        user->age = age < 13 ? 13 : age > 73 ? 73 : (int64_t)floor(age + 0.5);
        user->gender = rng_unit(r) < 0.3 ? "F" : "M";
        user->occupation = occupations[pick_weighted(r, s->occ_cum, N_OCC)].name;
        char zip[8];
        snprintf(zip, sizeof zip, "%05u", (unsigned)rng_below(r, 100000));
        if (!(user->zip_code = fn_demo_strdup(d, zip, strlen(zip))))
            return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    return FN_OK;
}

static fn_status make_items(fn_demo_data *d, synth *s, rng *r, fn_error *err)
{
    /* Popularity by a random rank: weight 1 / (rank + 20), a flattened Zipf law. */
    int rank[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) rank[i] = i;
    for (int i = N_ITEMS - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint32_t)i + 1), t = rank[i];
        rank[i] = rank[j];
        rank[j] = t;
    }
    double total = 0;
    for (int i = 0; i < N_ITEMS; i++) {
        fn_demo_item *it = fn_demo_add_item(d);
        if (!it) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        it->id = i + 1;
        it->line = (uint32_t)i + 1;
        it->year = rng_unit(r) < 0.6 ? 1990 + rng_below(r, 9) : 1930 + rng_below(r, 60);
        char title[96];
        const char *adj = adjectives[rng_below(r, sizeof adjectives / sizeof adjectives[0])];
        const char *noun = nouns[rng_below(r, sizeof nouns / sizeof nouns[0])];
        snprintf(title, sizeof title, "The %s %s", adj, noun);
        if (!(it->title = fn_demo_strdup(d, title, strlen(title))))
            return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        int want = 1 + (int)rng_below(r, 3);
        while (s->n_item_genres[i] < want) {
            int g = pick_weighted(r, s->genre_cum, N_GENRES);
            if (s->item_genres[i][g]) continue;
            s->item_genres[i][g] = 1;
            s->n_item_genres[i]++;
        }
        /* Genres in the catalog's fixed order, as MovieLens lists them. */
        for (int g = 0; g < N_GENRES; g++)
            if (s->item_genres[i][g]) it->genres[it->n_genres++] = genres[g].name;
        s->quality[i] = 0.6 * rng_normal(r);
        total += 1.0 / (rank[i] + 20);
        s->pop_cum[i] = total;
    }
    return FN_OK;
}

/* An item drawn by popularity that user u has not rated yet. */
static int pick_item(synth *s, rng *r, int u)
{
    for (;;) {
        double x = rng_unit(r) * s->pop_cum[N_ITEMS - 1];
        int lo = 0, hi = N_ITEMS - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (x < s->pop_cum[mid]) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if (s->rated_by[lo] != u + 1) {
            s->rated_by[lo] = u + 1;
            return lo;
        }
    }
}

static fn_status make_ratings(fn_demo_data *d, synth *s, rng *r, fn_error *err)
{
    /* 2020-01-01T00:00:00Z: clearly not MovieLens's 1997-98. */
    const int64_t t0 = 1577836800;
    for (int u = 0; u < N_USERS; u++) {
        const fn_demo_user *user = &d->users[u];
        int sex = user->gender[0] == 'F', ag = age_group(user->age), occ = 0;
        while (strcmp(occupations[occ].name, user->occupation) != 0) occ++;
        double taste[N_GENRES];
        for (int g = 0; g < N_GENRES; g++)
            taste[g] = s->occ_taste[occ][g] + s->gender_taste[sex][g] + s->age_taste[ag][g] +
                       0.5 * rng_normal(r);
        double x = rng_unit(r);
        int n = MIN_RATINGS + (int)(MAX_EXTRA * x * x * x);
        int64_t t = t0 + rng_below(r, 300 * 86400);
        for (int k = 0; k < n; k++) {
            int i = pick_item(s, r, u);
            double sum = 0;
            for (int g = 0; g < N_GENRES; g++)
                if (s->item_genres[i][g]) sum += taste[g];
            double score = 3.6 + sum / s->n_item_genres[i] + s->quality[i] + 0.7 * rng_normal(r);
            double stars = floor(score + 0.5);
            fn_demo_rating *rt = fn_demo_add_rating(d);
            if (!rt) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            rt->user_id = user->id;
            rt->item_id = d->items[i].id;
            rt->rating = (float)(stars < 1 ? 1 : stars > 5 ? 5 : stars);
            /* Sometimes 0 seconds apart, as when MovieLens users rated in bursts: ties happen. */
            t += rng_unit(r) < 0.1 ? 0 : 1 + rng_below(r, 3 * 86400);
            rt->timestamp = t;
        }
    }
    /* Files list ratings in no particular order, like u.data. */
    for (size_t i = d->n_ratings; i > 1; i--) {
        size_t j = rng_below(r, (uint32_t)i);
        fn_demo_rating tmp = d->ratings[i - 1];
        d->ratings[i - 1] = d->ratings[j];
        d->ratings[j] = tmp;
    }
    for (size_t i = 0; i < d->n_ratings; i++) d->ratings[i].line = (uint32_t)i + 1;
    return FN_OK;
}

fn_status fn_demo_synthetic(uint64_t seed, fn_demo_data *d, fn_error *err)
{
    synth *s = calloc(1, sizeof *s);
    if (!s) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    rng r = {seed};
    d->synthetic = 1;
    d->seed = seed;
    snprintf(d->source, sizeof d->source,
             "SYNTHETIC catalog shaped like MovieLens-100k (funnel demo --synthetic --seed %llu)",
             (unsigned long long)seed);
    snprintf(d->users_file, sizeof d->users_file, "synthetic users");
    snprintf(d->items_file, sizeof d->items_file, "synthetic items");
    snprintf(d->ratings_file, sizeof d->ratings_file, "synthetic ratings");

    int sum = 0;
    for (int o = 0; o < N_OCC; o++) s->occ_cum[o] = sum += occupations[o].weight;
    sum = 0;
    for (int g = 0; g < N_GENRES; g++) s->genre_cum[g] = sum += genres[g].weight;
    for (int g = 0; g < N_GENRES; g++) {
        for (int o = 0; o < N_OCC; o++) s->occ_taste[o][g] = 0.5 * rng_normal(&r);
        for (int x = 0; x < 2; x++) s->gender_taste[x][g] = 0.4 * rng_normal(&r);
        for (int a = 0; a < N_AGE_GROUPS; a++) s->age_taste[a][g] = 0.4 * rng_normal(&r);
    }
    fn_status st = make_users(d, s, &r, err);
    if (st == FN_OK) st = make_items(d, s, &r, err);
    if (st == FN_OK) st = make_ratings(d, s, &r, err);
    free(s);
    return st;
}
