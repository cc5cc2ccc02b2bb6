/* `narrate eval`: scores the captions (and spoken captions) of one or more
 * runs against reference captions, with the COCO caption metrics. Needs
 * no broker. client/EVAL.md says what is computed and how. */
#include "client/cli.h"
#include "client/eval/audio.h"
#include "client/eval/listen.h"
#include "client/eval/refs.h"
#include "client/eval/runs.h"
#include "client/eval/score.h"
#include "client/eval/tokenize.h"
#include "client/eval/wer.h"
#include "client/narrate.h"
#include "client/output.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/utf8.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_RUNS 16

static const char s_usage[] =
    "usage: narrate eval --refs REFS [--json FILE] [--listener pocketsphinx|none]\n"
    "                    [--listener-model DIR] [-q] RESULTS...\n"
    "\n"
    "Scores captions against reference captions with the COCO caption metrics\n"
    "(BLEU-1..4, ROUGE-L, CIDEr-D; client/EVAL.md), and spoken captions by\n"
    "transcribing each WAV with pocketsphinx: the same metrics on the\n"
    "transcripts, and the word error rate of transcript against caption.\n"
    "  --refs REFS        COCO captions JSON (images/file_name, annotations/\n"
    "                     image_id/caption) or TSV: FILE<TAB>CAPTION[<TAB>...]\n"
    "  RESULTS            output folders of narrate submit (searched for .json\n"
    "                     records), .json records, or .jsonl/.csv manifests;\n"
    "                     up to 16, compared side by side\n"
    "  --json FILE        also write every figure, per run and per image\n"
    "  --listener L       pocketsphinx (default) or none (captions only)\n"
    "  --listener-model DIR   pocketsphinx model folder (default: Debian's)\n"
    "  -q, --quiet        no table on stdout\n"
    "Images match references by base name (the part after the last '/').\n"
    "With several RESULTS, every run is scored on the images all of them\n"
    "captioned, so the figures compare.\n";

typedef struct {
    nr_evrun_t run;
    long *match;       /* per reference image: item index, -1 none, -2 two items */
    size_t skipped[6]; /* by reason, see s_reasons */
    int has_audio;
    nr_evmetrics_t text, speech;
    nr_evmetrics_t *text_img, *speech_img; /* per common image */
    nr_evsent_t *cands, *heard;            /* per common image */
    char **tokens, **transcript, **listen_err;
    long *edits;
    size_t speech_n, wer_edits, wer_words;
} s_run_t;

enum { S_NO_SOURCE, S_NOT_DONE, S_TOO_LONG, S_NO_REF, S_AMBIGUOUS, S_DUPLICATE, S_NREASONS };
static const char *const s_reasons[] = {"no source path", "not done or no caption", "caption too long",
                                        "no reference", "ambiguous reference name", "same name twice in the run"};
static const char *const s_reason_keys[] = {"no_source", "not_done", "caption_too_long", "no_reference",
                                            "ambiguous", "duplicate"};

typedef struct {
    const char *refs_path, *json_path, *listener, *model;
    int quiet;
    const char *results[S_MAX_RUNS];
    size_t nruns;
} s_args_t;

static int s_parse(int argc, char **argv, s_args_t *a) {
    memset(a, 0, sizeof *a);
    a->listener = "pocketsphinx";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = !strcmp(o, "--refs") ? &a->refs_path
                           : !strcmp(o, "--json") ? &a->json_path
                           : !strcmp(o, "--listener") ? &a->listener
                           : !strcmp(o, "--listener-model") ? &a->model : NULL;
        if (dst) {
            if (i + 1 >= argc) return fprintf(stderr, "narrate eval: %s needs a value\n", o), -1;
            *dst = argv[++i];
        } else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) {
            a->quiet = 1;
        } else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(s_usage, stdout);
            return 1;
        } else if (o[0] == '-' && o[1]) {
            return fprintf(stderr, "narrate eval: unknown option %s (see narrate eval --help)\n", o), -1;
        } else if (a->nruns == S_MAX_RUNS) {
            return fprintf(stderr, "narrate eval: at most %d RESULTS\n", S_MAX_RUNS), -1;
        } else {
            a->results[a->nruns++] = o;
        }
    }
    if (!a->refs_path) return fprintf(stderr, "narrate eval: --refs REFS is required (see narrate eval --help)\n"), -1;
    if (!a->nruns) return fprintf(stderr, "narrate eval: name at least one RESULTS (see narrate eval --help)\n"), -1;
    if (strcmp(a->listener, "pocketsphinx") && strcmp(a->listener, "none"))
        return fprintf(stderr, "narrate eval: --listener is pocketsphinx or none, not '%s'\n", a->listener), -1;
    return 0;
}

/* Matches a run's items to reference images by base name. */
static int s_match(s_run_t *r, const nr_evrefs_t *refs) {
    size_t nref = nr_evrefs_count(refs);
    r->match = malloc((nref ? nref : 1) * sizeof *r->match);
    if (!r->match) return NR_ENOMEM;
    for (size_t i = 0; i < nref; i++) r->match[i] = -1;
    for (size_t i = 0; i < r->run.n; i++) {
        const nr_evitem_t *it = &r->run.items[i];
        const nr_evref_t *ref = it->source ? nr_evrefs_find(refs, nr_evrefs_base(it->source)) : NULL;
        if (!it->source || !*nr_evrefs_base(it->source)) r->skipped[S_NO_SOURCE]++;
        else if ((it->state && strcmp(it->state, "done")) || !it->caption) r->skipped[S_NOT_DONE]++;
        else if (strlen(it->caption) > NR_EVTOK_MAX_BYTES) r->skipped[S_TOO_LONG]++;
        else if (!ref) r->skipped[S_NO_REF]++;
        else if (ref->ambiguous) r->skipped[S_AMBIGUOUS]++;
        else {
            long *m = &r->match[ref - nr_evrefs_at(refs, 0)];
            if (*m == -2) r->skipped[S_DUPLICATE]++;
            else if (*m >= 0) *m = -2, r->skipped[S_DUPLICATE] += 2;
            else *m = (long)i;
        }
    }
    return 0;
}

/* Transcribes the common images' audio of a run. Failures are kept per
 * image (and said on stderr); only out of memory stops. */
static int s_listen(s_run_t *r, nr_listen_t *ear, const size_t *common, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const nr_evitem_t *it = &r->run.items[r->match[common[i]]];
        if (!it->audio) continue;
        r->has_audio = 1;
        char err[1024] = "";
        nr_audio_t a;
        int rc = nr_audio_read_wav(it->audio, &a, err, sizeof err);
        if (!rc) rc = nr_listen_audio(ear, &a, &r->transcript[i], err, sizeof err);
        nr_audio_clear(&a);
        if (rc == NR_ENOMEM) return rc;
        if (rc) {
            nr_narrate_linef(stderr, "narrate eval: %s: cannot listen: %s", it->audio, err);
            if (!(r->listen_err[i] = strdup(err))) return NR_ENOMEM;
        }
    }
    return 0;
}

/* A JSON string from outside text (paths, captions from a manifest): bytes
 * that are not UTF-8 become U+FFFD, so the file stays valid JSON. */
static cJSON *s_text(const char *s) {
    if (!s) return cJSON_CreateNull();
    size_t n = strlen(s);
    if (nr_utf8_validate((const uint8_t *)s, n, NULL) == 0) return cJSON_CreateString(s);
    nr_buf_t b = {0};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t bad = 1, len = nr_utf8_decode((const uint8_t *)s + i, n - i, &cp, &bad);
        if (len) nr_buf_putn(&b, s + i, len);
        else nr_buf_puts(&b, "\xEF\xBF\xBD");
        i += len ? len : bad;
    }
    char *fixed = nr_buf_take(&b, NULL);
    cJSON *j = fixed ? cJSON_CreateString(fixed) : NULL;
    free(fixed);
    return j;
}

static void s_add_text(cJSON *obj, const char *key, const char *s) { cJSON_AddItemToObject(obj, key, s_text(s)); }

static cJSON *s_metrics_json(const nr_evmetrics_t *m) {
    cJSON *o = cJSON_CreateObject();
    char key[16];
    for (int k = 0; k < NR_BLEU_N; k++) {
        snprintf(key, sizeof key, "bleu_%d", k + 1);
        cJSON_AddNumberToObject(o, key, m->bleu[k]);
    }
    cJSON_AddNumberToObject(o, "rouge_l", m->rouge_l);
    cJSON_AddNumberToObject(o, "cider_d", m->cider_d);
    return o;
}

static double s_metric(const nr_evmetrics_t *m, int k) {
    return k < NR_BLEU_N ? m->bleu[k] : k == NR_BLEU_N ? m->rouge_l : m->cider_d;
}

static const char *const s_metric_names[] = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"};
static const char *const s_metric_keys[] = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"};

static double s_wer(const s_run_t *r) {
    return nr_wer_rate((long)r->wer_edits, r->wer_words, r->wer_edits ? 1 : 0);
}

static void s_print_table(const s_run_t *runs, size_t nruns, const nr_evrefs_t *refs, const char *refs_path,
                          size_t ncommon, int speech) {
    nr_narrate_linef(stdout, "refs: %s (%s): %zu images, %zu captions", refs_path, nr_evrefs_format(refs),
                     nr_evrefs_count(refs), nr_evrefs_captions(refs));
    for (size_t r = 0; r < nruns; r++) {
        size_t skipped = 0;
        for (int k = 0; k < S_NREASONS; k++) skipped += runs[r].skipped[k];
        nr_narrate_linef(stdout, "run %zu: %s (%s): %zu records, %zu set aside, %zu spoken", r + 1, runs[r].run.path,
                         runs[r].run.kind, runs[r].run.n, skipped, runs[r].speech_n);
        for (int k = 0; k < S_NREASONS; k++)
            if (runs[r].skipped[k]) nr_narrate_linef(stdout, "  %zu: %s", runs[r].skipped[k], s_reasons[k]);
    }
    printf("images scored: %zu%s\n\n", ncommon, nruns > 1 ? " (captioned in every run)" : "");
    printf("%-16s", "metric");
    for (size_t r = 0; r < nruns; r++) printf(" %9s%-2zu", "run ", r + 1);
    for (size_t r = 1; r < nruns; r++) printf("   %4zu-1   ", r + 1);
    printf("\n");
    for (int part = 0; part < 1 + speech; part++) {
        for (int k = 0; k < 7; k++) {
            if (k == 6 && !part) continue;
            printf("%-7s %-8s", part ? "speech" : "text", k == 6 ? "WER" : s_metric_names[k]);
            for (size_t r = 0; r < nruns; r++) {
                int has = !part || runs[r].has_audio;
                double v = k == 6 ? s_wer(&runs[r]) : s_metric(part ? &runs[r].speech : &runs[r].text, k);
                if (has) printf(" %11.4f", v);
                else printf(" %11s", "-");
            }
            for (size_t r = 1; r < nruns; r++) {
                int has = !part || (runs[r].has_audio && runs[0].has_audio);
                double v = k == 6 ? s_wer(&runs[r]) - s_wer(&runs[0])
                                  : s_metric(part ? &runs[r].speech : &runs[r].text, k) -
                                        s_metric(part ? &runs[0].speech : &runs[0].text, k);
                if (has) printf(" %+11.4f", v);
                else printf(" %11s", "-");
            }
            printf("\n");
        }
    }
}

static cJSON *s_run_json(const s_run_t *r, const nr_evrefs_t *refs, const size_t *common, size_t ncommon) {
    cJSON *o = cJSON_CreateObject();
    s_add_text(o, "path", r->run.path);
    cJSON_AddStringToObject(o, "kind", r->run.kind);
    cJSON_AddNumberToObject(o, "records", (double)r->run.n);
    cJSON_AddNumberToObject(o, "ignored_files", (double)r->run.ignored);
    cJSON *sk = cJSON_AddObjectToObject(o, "set_aside");
    for (int k = 0; k < S_NREASONS; k++) cJSON_AddNumberToObject(sk, s_reason_keys[k], (double)r->skipped[k]);
    cJSON *text = s_metrics_json(&r->text);
    cJSON_AddNumberToObject(text, "images", (double)ncommon);
    cJSON_AddItemToObject(o, "text", text);
    if (r->has_audio) {
        cJSON *sp = s_metrics_json(&r->speech);
        cJSON_AddNumberToObject(sp, "images", (double)r->speech_n);
        cJSON_AddNumberToObject(sp, "wer", s_wer(r));
        cJSON_AddNumberToObject(sp, "wer_edits", (double)r->wer_edits);
        cJSON_AddNumberToObject(sp, "wer_words", (double)r->wer_words);
        cJSON_AddItemToObject(o, "speech", sp);
    } else {
        cJSON_AddNullToObject(o, "speech");
    }
    cJSON *imgs = cJSON_AddArrayToObject(o, "images");
    for (size_t i = 0; i < ncommon; i++) {
        const nr_evitem_t *it = &r->run.items[r->match[common[i]]];
        cJSON *im = cJSON_CreateObject();
        s_add_text(im, "name", nr_evrefs_at(refs, common[i])->name);
        s_add_text(im, "source", it->source);
        s_add_text(im, "record", it->origin);
        s_add_text(im, "caption", it->caption);
        s_add_text(im, "tokens", r->tokens[i]);
        cJSON_AddNumberToObject(im, "references", (double)nr_evrefs_at(refs, common[i])->ncaptions);
        cJSON_AddItemToObject(im, "text", s_metrics_json(&r->text_img[i]));
        if (it->audio) s_add_text(im, "audio", it->audio);
        else cJSON_AddNullToObject(im, "audio");
        if (r->transcript[i]) {
            s_add_text(im, "transcript", r->transcript[i]);
            cJSON *sp = s_metrics_json(&r->speech_img[i]);
            cJSON_AddNumberToObject(sp, "wer", nr_wer_rate(r->edits[i], r->cands[i].n, r->heard[i].n));
            cJSON_AddItemToObject(im, "speech", sp);
        } else {
            cJSON_AddNullToObject(im, "transcript");
            cJSON_AddNullToObject(im, "speech");
        }
        if (r->listen_err[i]) s_add_text(im, "listen_error", r->listen_err[i]);
        cJSON_AddItemToArray(imgs, im);
    }
    return o;
}

static void s_run_clear(s_run_t *r, size_t ncommon) {
    for (size_t i = 0; i < ncommon; i++) {
        if (r->cands) nr_evsent_clear(&r->cands[i]);
        if (r->heard) nr_evsent_clear(&r->heard[i]);
        if (r->tokens) free(r->tokens[i]);
        if (r->transcript) free(r->transcript[i]);
        if (r->listen_err) free(r->listen_err[i]);
    }
    free(r->cands), free(r->heard), free(r->tokens), free(r->transcript), free(r->listen_err);
    free(r->text_img), free(r->speech_img), free(r->edits), free(r->match);
    nr_evrun_clear(&r->run);
}

/* Scores one run's common images: text, then what was heard. */
static int s_score_run(s_run_t *r, nr_evtok_t *vocab, nr_evsent_t *const *refs_tok, const size_t *nrefs,
                       const size_t *common, size_t n, nr_listen_t *ear) {
    r->cands = calloc(n, sizeof *r->cands), r->heard = calloc(n, sizeof *r->heard);
    r->tokens = calloc(n, sizeof *r->tokens), r->transcript = calloc(n, sizeof *r->transcript);
    r->listen_err = calloc(n, sizeof *r->listen_err), r->edits = calloc(n, sizeof *r->edits);
    r->text_img = calloc(n, sizeof *r->text_img), r->speech_img = calloc(n, sizeof *r->speech_img);
    if (!r->cands || !r->heard || !r->tokens || !r->transcript || !r->listen_err || !r->edits || !r->text_img ||
        !r->speech_img)
        return NR_ENOMEM;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const char *cap = r->run.items[r->match[common[i]]].caption;
        rc = nr_evtok_sentence(vocab, cap, &r->cands[i]);
        if (!rc) rc = nr_evtok_text(cap, &r->tokens[i]);
    }
    if (!rc) rc = nr_evscore(r->cands, refs_tok, nrefs, n, &r->text, r->text_img);
    if (!rc && ear) rc = s_listen(r, ear, common, n);
    if (rc || !r->has_audio) return rc;
    /* The speech set: this run's images with a transcript. */
    nr_evsent_t *heard = calloc(n, sizeof *heard), **hrefs = calloc(n, sizeof *hrefs);
    size_t *hn = calloc(n, sizeof *hn), *at = calloc(n, sizeof *at), m = 0;
    nr_evmetrics_t *per = calloc(n, sizeof *per);
    if (!heard || !hrefs || !hn || !at || !per) rc = NR_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        if (!r->transcript[i]) continue;
        rc = nr_evtok_sentence(vocab, r->transcript[i], &r->heard[i]);
        if (rc) break;
        r->edits[i] = nr_wer_edits(r->heard[i].w, r->heard[i].n, r->cands[i].w, r->cands[i].n);
        if (r->edits[i] < 0) rc = NR_ENOMEM;
        r->wer_edits += (size_t)r->edits[i];
        r->wer_words += r->cands[i].n;
        heard[m] = r->heard[i], hrefs[m] = refs_tok[i], hn[m] = nrefs[i], at[m++] = i;
    }
    r->speech_n = m;
    if (!rc && m) rc = nr_evscore(heard, hrefs, hn, m, &r->speech, per);
    for (size_t j = 0; !rc && j < m; j++) r->speech_img[at[j]] = per[j];
    free(heard), free(hrefs), free(hn), free(at), free(per);
    return rc;
}

int nr_narrate_cmd_eval(int argc, char **argv) {
    s_args_t a;
    int p = s_parse(argc, argv, &a);
    if (p) return p > 0 ? NR_EXIT_OK : NR_EXIT_USAGE;
    char err[2048];
    int code = NR_EXIT_OK, rc = 0;
    nr_listen_t *ear = NULL;
    nr_evtok_t *vocab = nr_evtok_new();
    s_run_t runs[S_MAX_RUNS];
    memset(runs, 0, sizeof runs);
    size_t *common = NULL, ncommon = 0, nruns = 0, *nrefs = NULL;
    nr_evsent_t **refs_tok = NULL;
    cJSON *root = NULL;
    nr_evrefs_t *refs = nr_evrefs_load(a.refs_path, err, sizeof err);
    if (!refs || !vocab) {
        nr_narrate_linef(stderr, "narrate eval: %s", vocab ? err : "out of memory");
        code = vocab ? NR_EXIT_USAGE : NR_EXIT_FAILED;
        goto done;
    }
    for (; nruns < a.nruns; nruns++) {
        rc = nr_evrun_load(a.results[nruns], &runs[nruns].run, err, sizeof err);
        if (!rc) rc = s_match(&runs[nruns], refs) ? nr_seterr(err, sizeof err, NR_ENOMEM, "out of memory") : 0;
        if (rc) {
            nr_narrate_linef(stderr, "narrate eval: %s", err);
            code = rc == NR_ENOMEM ? NR_EXIT_FAILED : NR_EXIT_USAGE;
            nruns++;
            goto done;
        }
        if (runs[nruns].run.ignored)
            nr_narrate_linef(stderr, "narrate eval: %s: %zu .json files are not job records (ignored)",
                             runs[nruns].run.path, runs[nruns].run.ignored);
    }
    /* The images every run captioned, in the order of the references. */
    size_t nref = nr_evrefs_count(refs);
    common = malloc((nref ? nref : 1) * sizeof *common);
    nrefs = malloc((nref ? nref : 1) * sizeof *nrefs);
    refs_tok = calloc(nref ? nref : 1, sizeof *refs_tok);
    if (!common || !nrefs || !refs_tok) goto oom;
    for (size_t i = 0; i < nref; i++) {
        size_t r = 0;
        while (r < nruns && runs[r].match[i] >= 0) r++;
        if (r == nruns) common[ncommon++] = i;
    }
    if (!ncommon) {
        nr_narrate_linef(stderr, "narrate eval: no image of %s matches a reference by name%s", a.results[0],
                         nruns > 1 ? " in every run" : "");
        code = NR_EXIT_FAILED;
        goto done;
    }
    for (size_t i = 0; i < ncommon; i++) {
        const nr_evref_t *ref = nr_evrefs_at(refs, common[i]);
        nrefs[i] = ref->ncaptions;
        if (!(refs_tok[i] = calloc(ref->ncaptions, sizeof **refs_tok))) goto oom;
        for (size_t c = 0; c < ref->ncaptions; c++)
            if ((rc = nr_evtok_sentence(vocab, ref->captions[c], &refs_tok[i][c]))) goto bad_text;
    }
    if (strcmp(a.listener, "none")) {
        ear = nr_listen_new(a.model, err, sizeof err);
        if (!ear) {
            nr_narrate_linef(stderr, "narrate eval: %s", err);
            code = NR_EXIT_USAGE;
            goto done;
        }
    }
    for (size_t r = 0; r < nruns; r++) {
        rc = s_score_run(&runs[r], vocab, refs_tok, nrefs, common, ncommon, ear);
        if (rc == NR_ENOMEM) goto oom;
        if (rc) goto bad_text;
    }
    int speech = 0;
    for (size_t r = 0; r < nruns; r++) speech |= runs[r].has_audio;
    if (!a.quiet) s_print_table(runs, nruns, refs, a.refs_path, ncommon, speech);
    if (a.json_path) {
        root = cJSON_CreateObject();
        cJSON *rj = cJSON_AddObjectToObject(root, "refs");
        s_add_text(rj, "path", a.refs_path);
        cJSON_AddStringToObject(rj, "format", nr_evrefs_format(refs));
        cJSON_AddNumberToObject(rj, "images", (double)nref);
        cJSON_AddNumberToObject(rj, "captions", (double)nr_evrefs_captions(refs));
        cJSON *amb = cJSON_AddArrayToObject(rj, "ambiguous");
        for (size_t i = 0; i < nref; i++)
            if (nr_evrefs_at(refs, i)->ambiguous) cJSON_AddItemToArray(amb, s_text(nr_evrefs_at(refs, i)->name));
        cJSON *st = cJSON_AddObjectToObject(root, "settings");
        cJSON_AddStringToObject(st, "tokenizer", "ptb-like (client/EVAL.md)");
        cJSON_AddStringToObject(st, "bleu", "corpus, n=1..4, closest reference length (pycocoevalcap)");
        cJSON_AddStringToObject(st, "rouge_l", "beta 1.2, mean over images");
        cJSON_AddStringToObject(st, "cider_d", "n=1..4, sigma 6, df over the scored images' references, x10");
        cJSON_AddStringToObject(st, "listener", ear ? "pocketsphinx 5prealpha en-us, 16 kHz" : "none");
        cJSON_AddNumberToObject(root, "images_scored", (double)ncommon);
        cJSON *rs = cJSON_AddArrayToObject(root, "runs");
        for (size_t r = 0; r < nruns; r++) cJSON_AddItemToArray(rs, s_run_json(&runs[r], refs, common, ncommon));
        cJSON *diffs = cJSON_AddArrayToObject(root, "differences");
        for (size_t r = 1; r < nruns; r++) {
            cJSON *d = cJSON_CreateObject(), *t = cJSON_AddObjectToObject(d, "text");
            cJSON_AddNumberToObject(d, "run", (double)r + 1);
            cJSON_AddNumberToObject(d, "against", 1);
            for (int k = 0; k < 6; k++)
                cJSON_AddNumberToObject(t, s_metric_keys[k], s_metric(&runs[r].text, k) - s_metric(&runs[0].text, k));
            if (runs[r].has_audio && runs[0].has_audio) {
                cJSON *s = cJSON_AddObjectToObject(d, "speech");
                for (int k = 0; k < 6; k++)
                    cJSON_AddNumberToObject(s, s_metric_keys[k],
                                            s_metric(&runs[r].speech, k) - s_metric(&runs[0].speech, k));
                cJSON_AddNumberToObject(s, "wer", s_wer(&runs[r]) - s_wer(&runs[0]));
            } else {
                cJSON_AddNullToObject(d, "speech");
            }
            cJSON_AddItemToArray(diffs, d);
        }
        char *text = cJSON_Print(root);
        if (!text) goto oom;
        size_t len = strlen(text);
        text[len] = '\n'; /* cJSON_Print's buffer ends in the NUL replaced here; written with its length */
        rc = nr_output_write_path(a.json_path, text, len + 1, err, sizeof err);
        cJSON_free(text);
        if (rc) {
            nr_narrate_linef(stderr, "narrate eval: %s", err);
            code = NR_EXIT_FAILED;
        }
    }
    goto done;
bad_text: /* not reached: refs and runs hold no caption nr_evtok refuses */
    fprintf(stderr, "narrate eval: cannot tokenise a caption: %s\n", nr_strerror(rc));
    code = NR_EXIT_FAILED;
    goto done;
oom:
    fprintf(stderr, "narrate eval: out of memory\n");
    code = NR_EXIT_FAILED;
done:
    cJSON_Delete(root);
    for (size_t r = 0; r < nruns; r++) s_run_clear(&runs[r], ncommon);
    for (size_t i = 0; refs_tok && i < ncommon; i++) {
        for (size_t c = 0; refs_tok[i] && c < nrefs[i]; c++) nr_evsent_clear(&refs_tok[i][c]);
        free(refs_tok[i]);
    }
    free(refs_tok), free(common), free(nrefs);
    nr_listen_destroy(&ear);
    nr_evtok_destroy(&vocab);
    nr_evrefs_destroy(&refs);
    return code;
}
