/* CIDEr-D, following pycocoevalcap's cider_scorer.py (compute_doc_freq,
 * counts2vec, sim, compute_cider). */
#include "client/eval/cider.h"
#include "client/eval/ngram.h"
#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A caption as tf-idf weights per n-gram, with per-n norms and its length
 * (the number of bigrams: counts2vec adds term counts where its 0-based
 * index n == 1). */
typedef struct {
    nr_ngram_map_t vec;
    double norm[NR_CIDER_N];
    double length;
} s_vec_t;

static int s_vec(const nr_evsent_t *s, const nr_ngram_map_t *df, double ref_len, s_vec_t *out) {
    memset(out, 0, sizeof *out);
    nr_ngram_map_t counts = {0};
    int rc = nr_ngram_count(&counts, s->w, s->n, NR_CIDER_N);
    for (size_t i = 0; !rc && i < counts.cap; i++) {
        const nr_ngram_entry_t *e = &counts.slots[i];
        if (!e->n) continue;
        double d = nr_ngram_get(df, e->w, e->n);
        double v = e->v * (ref_len - log(d > 1.0 ? d : 1.0));
        rc = nr_ngram_add(&out->vec, e->w, e->n, v);
        out->norm[e->n - 1] += v * v;
        if (e->n == 2) out->length += e->v;
    }
    for (int k = 0; k < NR_CIDER_N; k++) out->norm[k] = sqrt(out->norm[k]);
    nr_ngram_clear(&counts);
    return rc;
}

static void s_sim(const s_vec_t *hyp, const s_vec_t *ref, double val[NR_CIDER_N]) {
    double delta = hyp->length - ref->length;
    double penalty = exp(-(delta * delta) / (2 * NR_CIDER_SIGMA * NR_CIDER_SIGMA));
    for (int k = 0; k < NR_CIDER_N; k++) val[k] = 0;
    for (size_t i = 0; i < hyp->vec.cap; i++) {
        const nr_ngram_entry_t *e = &hyp->vec.slots[i];
        if (!e->n) continue;
        double r = nr_ngram_get(&ref->vec, e->w, e->n);
        val[e->n - 1] += (e->v < r ? e->v : r) * r; /* clipped */
    }
    for (int k = 0; k < NR_CIDER_N; k++) {
        if (hyp->norm[k] != 0 && ref->norm[k] != 0) val[k] /= hyp->norm[k] * ref->norm[k];
        val[k] *= penalty;
    }
}

/* Document frequency: in how many images' reference sets each n-gram occurs. */
static int s_doc_freq(const nr_cider_image_t *images, size_t n, nr_ngram_map_t *df) {
    for (size_t i = 0; i < n; i++) {
        nr_ngram_map_t seen = {0};
        int rc = 0;
        for (size_t r = 0; r < images[i].nrefs && !rc; r++)
            rc = nr_ngram_count(&seen, images[i].refs[r].w, images[i].refs[r].n, NR_CIDER_N);
        for (size_t s = 0; !rc && s < seen.cap; s++)
            if (seen.slots[s].n) rc = nr_ngram_add(df, seen.slots[s].w, seen.slots[s].n, 1.0);
        nr_ngram_clear(&seen);
        if (rc) return rc;
    }
    return 0;
}

int nr_cider_score(const nr_cider_image_t *images, size_t n, double *scores, double *mean) {
    if (!images || n == 0) return NR_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!images[i].cand || !images[i].refs || images[i].nrefs == 0) return NR_EINVAL;
    nr_ngram_map_t df = {0};
    int rc = s_doc_freq(images, n, &df);
    double ref_len = log((double)n), total = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        s_vec_t hyp, ref;
        double sum[NR_CIDER_N] = {0}, val[NR_CIDER_N];
        rc = s_vec(images[i].cand, &df, ref_len, &hyp);
        for (size_t r = 0; !rc && r < images[i].nrefs; r++) {
            rc = s_vec(&images[i].refs[r], &df, ref_len, &ref);
            if (!rc) {
                s_sim(&hyp, &ref, val);
                for (int k = 0; k < NR_CIDER_N; k++) sum[k] += val[k];
            }
            nr_ngram_clear(&ref.vec);
        }
        nr_ngram_clear(&hyp.vec);
        double avg = 0;
        for (int k = 0; k < NR_CIDER_N; k++) avg += sum[k];
        avg = avg / NR_CIDER_N / (double)images[i].nrefs * 10.0;
        if (scores) scores[i] = avg;
        total += avg;
    }
    nr_ngram_clear(&df);
    if (!rc && mean) *mean = total / (double)n;
    return rc;
}
