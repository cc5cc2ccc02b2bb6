/* Loading reference captions (COCO JSON or TSV), keyed by base name. */
#include "client/eval/refs.h"
#include "client/eval/file.h"
#include "client/eval/tokenize.h"
#include "common/error.h"
#include "common/utf8.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nr_evrefs {
    nr_evref_t *items;
    size_t n, cap;
    size_t *slots; /* index + 1, 0 empty; by base name */
    size_t nslots;
    size_t captions;
    const char *format;
};

const char *nr_evrefs_base(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static uint64_t s_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t *s_slot(const nr_evrefs_t *self, const char *name) {
    size_t i = (size_t)(s_hash(name) & (self->nslots - 1));
    while (self->slots[i] && strcmp(self->items[self->slots[i] - 1].name, name))
        i = (i + 1) & (self->nslots - 1);
    return &self->slots[i];
}

static int s_rehash(nr_evrefs_t *self) {
    size_t n = self->nslots ? self->nslots * 2 : 1024;
    size_t *slots = calloc(n, sizeof *slots);
    if (!slots) return NR_ENOMEM;
    free(self->slots);
    self->slots = slots;
    self->nslots = n;
    for (size_t i = 0; i < self->n; i++) *s_slot(self, self->items[i].name) = i + 1;
    return 0;
}

/* The image named base (created when new); NULL when out of memory. */
static nr_evref_t *s_image(nr_evrefs_t *self, const char *base) {
    if ((self->n + 1) * 2 > self->nslots && s_rehash(self)) return NULL;
    size_t *slot = s_slot(self, base);
    if (*slot) return &self->items[*slot - 1];
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 256;
        nr_evref_t *items = realloc(self->items, cap * sizeof *items);
        if (!items) return NULL;
        self->items = items;
        self->cap = cap;
    }
    nr_evref_t *r = &self->items[self->n];
    memset(r, 0, sizeof *r);
    r->coco_id = -1;
    if (!(r->name = strdup(base))) return NULL;
    *slot = ++self->n;
    return r;
}

/* Adds a caption; a message in err on failure. */
static int s_caption(nr_evrefs_t *self, nr_evref_t *r, const char *text, size_t len, char *err, size_t errlen,
                     const char *where) {
    if (nr_utf8_validate((const uint8_t *)text, len, NULL) != 0 || memchr(text, '\0', len))
        return nr_seterr(err, errlen, NR_EINVAL, "%s: a caption of %s is not UTF-8 text", where, r->name);
    if (len > NR_EVTOK_MAX_BYTES)
        return nr_seterr(err, errlen, NR_ETOOBIG, "%s: a caption of %s is longer than %d bytes", where, r->name,
                         NR_EVTOK_MAX_BYTES);
    if (r->ncaptions >= NR_EVREFS_MAX_CAPTIONS)
        return nr_seterr(err, errlen, NR_ETOOBIG, "%s: %s has more than %d captions", where, r->name,
                         NR_EVREFS_MAX_CAPTIONS);
    char **caps = realloc(r->captions, (r->ncaptions + 1) * sizeof *caps);
    if (!caps) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    r->captions = caps;
    if (!(caps[r->ncaptions] = strndup(text, len))) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    r->ncaptions++;
    self->captions++;
    return 0;
}

/* COCO: image ids to base names, then annotations onto them. */
static int s_load_coco(nr_evrefs_t *self, const char *path, const char *text, size_t size, char *err,
                       size_t errlen) {
    cJSON *root = cJSON_ParseWithLength(text, size);
    if (!root) return nr_seterr(err, errlen, NR_EINVAL, "refs %s is not valid JSON", path);
    int rc = 0;
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsArray(images) || !cJSON_IsArray(anns)) {
        rc = nr_seterr(err, errlen, NR_EINVAL,
                       "refs %s: a COCO captions file needs arrays \"images\" and \"annotations\"", path);
        goto done;
    }
    if (cJSON_GetArraySize(images) > NR_EVREFS_MAX_IMAGES) {
        rc = nr_seterr(err, errlen, NR_ETOOBIG, "refs %s: more than %d images", path, NR_EVREFS_MAX_IMAGES);
        goto done;
    }
    /* id -> image index, in a table sized for the images. */
    size_t nimg = (size_t)cJSON_GetArraySize(images), cap = 16;
    while (cap < nimg * 2 + 2) cap *= 2;
    long long *ids = malloc(cap * sizeof *ids);
    size_t *which = malloc(cap * sizeof *which);
    if (!ids || !which) {
        free(ids), free(which);
        rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < cap; i++) ids[i] = -1;
    const cJSON *img, *ann;
    size_t k = 0;
    cJSON_ArrayForEach(img, images) {
        k++;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(img, "id");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(img, "file_name");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 9e15 || !cJSON_IsString(fn) ||
            !*nr_evrefs_base(fn->valuestring)) {
            rc = nr_seterr(err, errlen, NR_EINVAL,
                           "refs %s: images[%zu] needs a non-negative \"id\" and a \"file_name\"", path, k - 1);
            break;
        }
        long long v = (long long)id->valuedouble;
        size_t h = (size_t)(v * 2654435761u) & (cap - 1);
        while (ids[h] != -1 && ids[h] != v) h = (h + 1) & (cap - 1);
        if (ids[h] == v) {
            rc = nr_seterr(err, errlen, NR_EINVAL, "refs %s: image id %lld appears twice", path, v);
            break;
        }
        nr_evref_t *r = s_image(self, nr_evrefs_base(fn->valuestring));
        if (!r) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            break;
        }
        if (r->coco_id >= 0 && r->coco_id != v) r->ambiguous = 1; /* same base name, another image */
        r->coco_id = v;
        ids[h] = v;
        which[h] = (size_t)(r - self->items);
    }
    k = 0;
    cJSON_ArrayForEach(ann, anns) {
        if (rc) break;
        k++;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ann, "image_id");
        const cJSON *cap_text = cJSON_GetObjectItemCaseSensitive(ann, "caption");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(cap_text)) {
            rc = nr_seterr(err, errlen, NR_EINVAL,
                           "refs %s: annotations[%zu] needs a numeric \"image_id\" and a string \"caption\"", path,
                           k - 1);
            break;
        }
        long long v = (long long)id->valuedouble;
        size_t h = (size_t)(v * 2654435761u) & (cap - 1);
        while (ids[h] != -1 && ids[h] != v) h = (h + 1) & (cap - 1);
        if (ids[h] != v) {
            rc = nr_seterr(err, errlen, NR_EINVAL, "refs %s: annotations[%zu] names image_id %lld, not in \"images\"",
                           path, k - 1, v);
            break;
        }
        char where[64];
        snprintf(where, sizeof where, "annotations[%zu]", k - 1);
        rc = s_caption(self, &self->items[which[h]], cap_text->valuestring, strlen(cap_text->valuestring), err,
                       errlen, where);
    }
    free(ids), free(which);
done:
    cJSON_Delete(root);
    return rc;
}

/* TSV: NAME<TAB>CAPTION[<TAB>CAPTION...] per line; blank lines skipped. */
static int s_load_tsv(nr_evrefs_t *self, const char *path, char *text, char *err, size_t errlen) {
    size_t line = 0;
    for (char *p = text; *p;) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        line++;
        if (len && p[len - 1] == '\r') len--;
        p[len] = '\0';
        if (len) {
            char *tab = strchr(p, '\t');
            if (!tab || tab == p) {
                return nr_seterr(err, errlen, NR_EINVAL,
                                 "refs %s line %zu: expected FILE<TAB>CAPTION[<TAB>CAPTION...]", path, line);
            }
            *tab = '\0';
            if (nr_utf8_validate((const uint8_t *)p, strlen(p), NULL) != 0 || !*nr_evrefs_base(p))
                return nr_seterr(err, errlen, NR_EINVAL, "refs %s line %zu: bad file name", path, line);
            if (self->n >= NR_EVREFS_MAX_IMAGES && !nr_evrefs_find(self, nr_evrefs_base(p)))
                return nr_seterr(err, errlen, NR_ETOOBIG, "refs %s: more than %d images", path, NR_EVREFS_MAX_IMAGES);
            nr_evref_t *r = s_image(self, nr_evrefs_base(p));
            if (!r) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            /* Rows of one name gather; another path with the same base name is another image. */
            if (!r->path && !(r->path = strdup(p))) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            if (strcmp(r->path, p)) r->ambiguous = 1;
            char where[64];
            snprintf(where, sizeof where, "line %zu", line);
            for (char *c = tab + 1; c;) {
                char *next = strchr(c, '\t');
                size_t clen = next ? (size_t)(next - c) : strlen(c);
                int rc = clen ? s_caption(self, r, c, clen, err, errlen, where) : 0;
                if (rc) return rc;
                c = next ? next + 1 : NULL;
            }
        }
        p = end ? end + 1 : p + len;
    }
    return 0;
}

nr_evrefs_t *nr_evrefs_load(const char *path, char *err, size_t errlen) {
    size_t size = 0;
    int code;
    char *text = nr_ev_read_file(path, NR_EVREFS_MAX_BYTES, 1, "refs", &size, &code, err, errlen);
    if (!text) return NULL;
    nr_evrefs_t *self = calloc(1, sizeof *self);
    int rc = self ? 0 : nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    if (!rc && memchr(text, '\0', size))
        rc = nr_seterr(err, errlen, NR_EINVAL, "refs %s holds a NUL byte: not JSON or TSV text", path);
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    if (!rc) {
        self->format = *p == '{' ? "coco" : "tsv";
        rc = *p == '{' ? s_load_coco(self, path, text, size, err, errlen) : s_load_tsv(self, path, text, err, errlen);
    }
    if (!rc && self->captions == 0) rc = nr_seterr(err, errlen, NR_EINVAL, "refs %s has no captions", path);
    free(text);
    if (rc) nr_evrefs_destroy(&self);
    return self;
}

void nr_evrefs_destroy(nr_evrefs_t **self) {
    if (!self || !*self) return;
    for (size_t i = 0; i < (*self)->n; i++) {
        for (size_t c = 0; c < (*self)->items[i].ncaptions; c++) free((*self)->items[i].captions[c]);
        free((*self)->items[i].captions);
        free((*self)->items[i].name);
        free((*self)->items[i].path);
    }
    free((*self)->items);
    free((*self)->slots);
    free(*self);
    *self = NULL;
}

const char *nr_evrefs_format(const nr_evrefs_t *self) { return self->format; }
size_t nr_evrefs_count(const nr_evrefs_t *self) { return self->n; }
const nr_evref_t *nr_evrefs_at(const nr_evrefs_t *self, size_t i) { return i < self->n ? &self->items[i] : NULL; }
size_t nr_evrefs_captions(const nr_evrefs_t *self) { return self->captions; }

const nr_evref_t *nr_evrefs_find(const nr_evrefs_t *self, const char *base) {
    if (!self->nslots) return NULL;
    size_t slot = *s_slot(self, base);
    return slot && self->items[slot - 1].ncaptions ? &self->items[slot - 1] : NULL;
}
