/* Unit tests of alt text in XMP (client/alttext.h, client/altjob.h) with
 * the real exempi on real JPEG, PNG, TIFF, GIF and WebP files: what is
 * written is read back with exempi and with an XMP reader of this file's
 * own (s_indep_alt: the packet's bytes, no exempi), existing alt text is
 * kept unless --overwrite, the 250-character cut, the sidecar fallback for
 * WebP, malformed XMP left alone, links refused; and the run manifest's
 * CSV quoting (RFC 4180) and JSON Lines rows. */
#include "client/altjob.h"
#include "client/alttext.h"
#include "client/manifest.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_NS "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"

static char s_tmp[256];

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void s_setup(void) {
    snprintf(s_tmp, sizeof s_tmp, "/tmp/nr-test-alttext-XXXXXX");
    cr_assert_not_null(mkdtemp(s_tmp));
}

static void s_teardown(void) {
    if (s_tmp[0]) nftw(s_tmp, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static char *s_path(const char *rel) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", s_tmp, rel);
    return p[k];
}

static uint8_t *s_read(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void s_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    fclose(f);
}

static uint8_t *s_fixture(const char *name, size_t *size) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/fixtures/images/%s", getenv("NR_SOURCE_DIR") ? getenv("NR_SOURCE_DIR") : ".", name);
    uint8_t *b = s_read(p, size);
    cr_assert_not_null(b, "fixture %s (is NR_SOURCE_DIR set?)", p);
    return b;
}

/* A baseline TIFF, 2x2 8-bit grey, little-endian, one strip. */
static void s_make_tiff(const char *path) {
    uint8_t t[114] = {'I', 'I', 42, 0, 8, 0, 0, 0, 8, 0};
    static const uint16_t tags[8][2] = {{256, 2}, {257, 2}, {258, 8}, {259, 1},
                                        {262, 1}, {273, 110}, {278, 2}, {279, 4}};
    for (int i = 0; i < 8; i++) {
        uint8_t *e = t + 10 + 12 * i;
        e[0] = (uint8_t)tags[i][0];
        e[1] = (uint8_t)(tags[i][0] >> 8);
        e[2] = tags[i][0] == 273 || tags[i][0] == 279 ? 4 : 3; /* LONG or SHORT */
        e[4] = 1;                                            /* count */
        e[8] = (uint8_t)tags[i][1];
    }
    t[110] = 0, t[111] = 85, t[112] = 170, t[113] = 255;
    s_write(path, t, sizeof t);
}

/* The 1x1 GIF89a every web developer has seen. */
static void s_make_gif(const char *path) {
    static const uint8_t g[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0,
                                0, 0, 0, 0xff, 0xff, 0xff, 0x21, 0xf9, 4, 1, 0, 0, 0,
                                0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b};
    s_write(path, g, sizeof g);
}

/* The fixture JPEG with an APP1 XMP segment holding `packet`, written by
 * hand (as another tool, or a person, would have). */
static void s_make_jpeg_xmp(const char *path, const char *packet) {
    size_t n;
    uint8_t *jpg = s_fixture("astronaut_50x40_up.jpg", &n);
    static const char sig[] = "http://ns.adobe.com/xap/1.0/";
    size_t seg = 2 + sizeof sig + strlen(packet);
    uint8_t *out = malloc(n + seg + 2);
    memcpy(out, jpg, 2); /* SOI */
    out[2] = 0xff, out[3] = 0xe1, out[4] = (uint8_t)(seg >> 8), out[5] = (uint8_t)seg;
    memcpy(out + 6, sig, sizeof sig); /* with its NUL */
    memcpy(out + 6 + sizeof sig, packet, strlen(packet));
    memcpy(out + 2 + 2 + seg, jpg + 2, n - 2);
    s_write(path, out, n + seg + 2);
    free(out);
    free(jpg);
}

static const char *s_human_packet =
    "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"
    "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
    "xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
    "<rdf:Description rdf:about='' xmlns:Iptc4xmpCore='" S_NS "'>"
    "<Iptc4xmpCore:AltTextAccessibility><rdf:Alt>"
    "<rdf:li xml:lang='x-default'>A person wrote this &amp; means it</rdf:li>"
    "</rdf:Alt></Iptc4xmpCore:AltTextAccessibility>"
    "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>";

/* Reads the x-default AltTextAccessibility from the raw bytes of a file:
 * the namespace must be declared, the property's rdf:li with
 * xml:lang="x-default" (either quote) holds the text, and the five XML
 * entities are decoded. NULL when not there. No exempi. */
static char *s_indep_alt(const char *path) {
    size_t n;
    uint8_t *b = s_read(path, &n);
    if (!b) return NULL;
    char *text = NULL;
    const char *s = (const char *)b;
    /* Files may hold NULs: search with memmem. */
    const char *ns = memmem(s, n, S_NS, strlen(S_NS));
    const char *prop = memmem(s, n, "AltTextAccessibility>", 21);
    if (ns && prop) {
        const char *end = s + n;
        const char *li = memmem(prop, (size_t)(end - prop), "xml:lang=", 9);
        if (li && (li[9] == '"' || li[9] == '\'') && !strncmp(li + 10, "x-default", 9)) {
            const char *gt = memchr(li, '>', (size_t)(end - li));
            const char *lt = gt ? memchr(gt, '<', (size_t)(end - gt)) : NULL;
            if (lt) {
                text = malloc((size_t)(lt - gt));
                size_t k = 0;
                for (const char *p = gt + 1; p < lt;) {
                    static const char *const ent[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
                                                         {"&quot;", "\""}, {"&apos;", "'"}};
                    int hit = 0;
                    for (int e = 0; e < 5 && !hit; e++)
                        if (!strncmp(p, ent[e][0], strlen(ent[e][0]))) {
                            text[k++] = ent[e][1][0];
                            p += strlen(ent[e][0]);
                            hit = 1;
                        }
                    if (!hit) text[k++] = *p++;
                }
                text[k] = 0;
            }
        }
    }
    free(b);
    return text;
}

static char *s_exempi_alt(const char *path) {
    char err[512], *t = NULL;
    int rc = nr_alttext_read_image(path, &t, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", path, err);
    return t;
}

/* ---- cutting ---- */

Test(alttext, short_caption_is_kept_trimmed) {
    char *out, err[256];
    int cut;
    cr_assert_eq(nr_alttext_cut("  a dog on a beach \n", 250, &out, &cut, err, sizeof err), 0);
    cr_expect_str_eq(out, "a dog on a beach");
    cr_expect_eq(cut, 0);
    free(out);
    cr_expect_eq(nr_alttext_cut("bad \xff byte", 250, &out, &cut, err, sizeof err), NR_ETEXT);
    cr_expect_null(out);
}

Test(alttext, long_caption_is_cut_at_a_word_boundary) {
    char caption[600] = "", *out, err[256];
    int cut;
    while (strlen(caption) < 520) strcat(caption, "a brown dog, "); /* 13 bytes a phrase */
    cr_assert_eq(nr_alttext_cut(caption, 250, &out, &cut, err, sizeof err), 0);
    cr_expect_eq(cut, 1);
    cr_expect_leq(strlen(out), 250);
    cr_expect_gt(strlen(out), 230);
    cr_expect(!strncmp(caption, out, strlen(out)), "not a prefix: %s", out);
    /* Ends on a whole word, without the dangling comma or space. */
    char last = out[strlen(out) - 1];
    cr_expect(last != ' ' && last != ',', "ends with '%c'", last);
    cr_expect(caption[strlen(out)] == ' ' || caption[strlen(out)] == ',', "cut inside a word: %s",
              out + strlen(out) - 10);
    free(out);
}

Test(alttext, cut_counts_characters_not_bytes_and_keeps_marks) {
    /* 300 x "é" (2 bytes each) in words of 10: cut at 250 characters. */
    char caption[2000] = "", *out, err[256];
    int cut;
    for (int i = 0; i < 300; i++) strcat(caption, i % 10 == 9 ? "\xc3\xa9 " : "\xc3\xa9");
    cr_assert_eq(nr_alttext_cut(caption, 250, &out, &cut, err, sizeof err), 0);
    cr_expect_eq(cut, 1);
    size_t chars = 0;
    for (const char *p = out; *p; p++) chars += ((unsigned char)*p & 0xC0) != 0x80;
    cr_expect_leq(chars, 250);
    cr_expect_geq(chars, 240);
    free(out);
    /* One long word of "e" + COMBINING ACUTE: no base is left without
     * its mark, and the cut is a valid string of whole pairs. */
    caption[0] = 0;
    for (int i = 0; i < 200; i++) strcat(caption, "e\xcc\x81");
    cr_assert_eq(nr_alttext_cut(caption, 251, &out, &cut, err, sizeof err), 0);
    cr_expect_eq(cut, 1);
    cr_expect_eq(strlen(out) % 3, 0, "a base was cut from its mark: %zu bytes", strlen(out));
    cr_expect_eq(strlen(out), 125 * 3);
    free(out);
}

/* ---- embedding and reading ---- */

static void s_embed_and_check(const char *src, const char *name) {
    char err[512];
    const char *text = "A cat on a mat, \"quoted\" & <angled>";
    cr_assert_eq(mkdir(s_path("out"), 0700) == 0 || access(s_path("out"), F_OK) == 0, 1);
    int rc = nr_alttext_embed_copy(src, s_path("out"), name, text, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", name, err);
    char out[600];
    snprintf(out, sizeof out, "%s/out/%s", s_tmp, name);
    char *a = s_exempi_alt(out), *b = s_indep_alt(out);
    cr_expect_str_eq(a ? a : "(none)", text, "%s via exempi", name);
    cr_expect_str_eq(b ? b : "(none)", text, "%s via the packet's bytes", name);
    free(a);
    free(b);
    /* The original is untouched. */
    char *orig = s_indep_alt(src);
    cr_expect_null(orig, "%s: the original changed", name);
    free(orig);
}

Test(alttext, embed_copy_jpeg_png_tiff_gif, .init = s_setup, .fini = s_teardown) {
    size_t n;
    uint8_t *b = s_fixture("astronaut_50x40_up.jpg", &n);
    s_write(s_path("a.jpg"), b, n);
    free(b);
    b = s_fixture("astronaut_50x40_up.dec.png", &n);
    s_write(s_path("a.png"), b, n);
    free(b);
    s_make_tiff(s_path("a.tif"));
    s_make_gif(s_path("a.gif"));
    s_embed_and_check(s_path("a.jpg"), "a.jpg");
    s_embed_and_check(s_path("a.png"), "a.png");
    s_embed_and_check(s_path("a.tif"), "a.tif");
    s_embed_and_check(s_path("a.gif"), "a.gif");
}

Test(alttext, webp_cannot_be_embedded, .init = s_setup, .fini = s_teardown) {
    size_t n;
    uint8_t *b = s_fixture("astronaut_1000x20.webp", &n);
    s_write(s_path("a.webp"), b, n);
    free(b);
    char err[512];
    cr_assert_eq(mkdir(s_path("out"), 0700), 0);
    cr_expect_eq(nr_alttext_embed_copy(s_path("a.webp"), s_path("out"), "a.webp", "x", err, sizeof err),
                 NR_EUNSUPPORTED);
    cr_expect_neq(access(s_path("out/a.webp"), F_OK), 0, "a copy was left");
    /* No temporary file left behind either. */
    cr_expect_neq(rmdir(s_path("out")), -1, "out/ is not empty");
}

Test(alttext, reads_a_human_alt_text_and_refuses_malformed_xmp, .init = s_setup, .fini = s_teardown) {
    char err[512], *t = NULL;
    s_make_jpeg_xmp(s_path("human.jpg"), s_human_packet);
    cr_assert_eq(nr_alttext_read_image(s_path("human.jpg"), &t, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(t ? t : "(none)", "A person wrote this & means it");
    free(t);
    s_make_jpeg_xmp(s_path("broken.jpg"),
                    "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta "
                    "xmlns:x='adobe:ns:meta/'><rdf:RDF><unclosed></x:xmpmeta><?xpacket end='w'?>");
    cr_expect_eq(nr_alttext_read_image(s_path("broken.jpg"), &t, err, sizeof err), NR_EIMAGE);
    cr_expect(strstr(err, "malformed"), "%s", err);
    s_write(s_path("broken.xmp"), "<x:xmpmeta><nope", 16);
    cr_expect_eq(nr_alttext_read_sidecar(s_path("broken.xmp"), &t, err, sizeof err), NR_EIMAGE);
    cr_expect_eq(nr_alttext_read_sidecar(s_path("missing.xmp"), &t, err, sizeof err), 0);
    cr_expect_null(t);
    cr_assert_eq(mkdir(s_path("dir.xmp"), 0700), 0);
    cr_expect_eq(nr_alttext_read_sidecar(s_path("dir.xmp"), &t, err, sizeof err), NR_EIO);
}

/* A format exempi has no handler for (here a BMP with an XMP packet in
 * it, as some tools write) is scanned: the person's alt text is seen. */
Test(alttext, packet_in_an_unknown_format_is_found, .init = s_setup, .fini = s_teardown) {
    char buf[2048] = "BM";
    size_t n = 2 + 52;
    memset(buf + 2, 0, 52);
    memcpy(buf + n, s_human_packet, strlen(s_human_packet));
    n += strlen(s_human_packet);
    s_write(s_path("scan.bmp"), buf, n);
    char err[512], *t = NULL;
    cr_assert_eq(nr_alttext_read_image(s_path("scan.bmp"), &t, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(t ? t : "(none)", "A person wrote this & means it");
    free(t);
}

Test(alttext, sidecar_keeps_other_properties, .init = s_setup, .fini = s_teardown) {
    static const char side[] =
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
        "xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>"
        "<dc:creator><rdf:Seq><rdf:li>Ada Example</rdf:li></rdf:Seq></dc:creator>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>";
    s_write(s_path("a.jpg.xmp"), side, sizeof side - 1);
    char err[512], *t = NULL;
    cr_assert_eq(nr_alttext_write_sidecar(s_tmp, "a.jpg.xmp", "two dogs", err, sizeof err), 0, "%s", err);
    char *b = s_indep_alt(s_path("a.jpg.xmp"));
    cr_expect_str_eq(b ? b : "(none)", "two dogs");
    free(b);
    cr_assert_eq(nr_alttext_read_sidecar(s_path("a.jpg.xmp"), &t, err, sizeof err), 0);
    cr_expect_str_eq(t ? t : "(none)", "two dogs");
    free(t);
    size_t n;
    uint8_t *raw = s_read(s_path("a.jpg.xmp"), &n);
    cr_expect(strstr((char *)raw, "Ada Example"), "dc:creator lost: %s", raw);
    free(raw);
    /* A malformed sidecar is never written over. */
    s_write(s_path("b.xmp"), "<x:xmpmeta><nope", 16);
    cr_expect_eq(nr_alttext_write_sidecar(s_tmp, "b.xmp", "x", err, sizeof err), NR_EIMAGE);
    raw = s_read(s_path("b.xmp"), &n);
    cr_expect_eq(n, 16);
    free(raw);
}

Test(alttext, in_place_refuses_a_link, .init = s_setup, .fini = s_teardown) {
    s_make_gif(s_path("real.gif"));
    cr_assert_eq(symlink(s_path("real.gif"), s_path("link.gif")), 0);
    char err[512];
    cr_expect_eq(nr_alttext_embed_in_place(s_path("link.gif"), "x", err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "link"), "%s", err);
    cr_expect_eq(nr_alttext_embed_in_place(s_path("real.gif"), "a white dot", err, sizeof err), 0,
                 "%s", err);
    char *b = s_indep_alt(s_path("real.gif"));
    cr_expect_str_eq(b ? b : "(none)", "a white dot");
    free(b);
}

/* ---- one image's alt text (altjob) ---- */

static nr_altjob_t s_job(nr_altjob_mode_t mode, int overwrite, const char *src, const char *caption) {
    nr_altjob_params_t p = {mode, 0, overwrite};
    nr_altjob_t j = {0};
    nr_altjob_probe(&j, &p, src, s_path("out"), "img.jpg");
    nr_altjob_apply(&j, &p, src, s_path("out"), "img.jpg", caption);
    return j;
}

Test(altjob, written_then_kept_then_overwritten, .init = s_setup, .fini = s_teardown) {
    size_t n;
    uint8_t *b = s_fixture("astronaut_50x40_up.jpg", &n);
    s_write(s_path("img.jpg"), b, n);
    free(b);
    cr_assert_eq(mkdir(s_path("out"), 0700), 0);
    nr_altjob_t j = s_job(NR_ALTJOB_SIDECAR, 0, s_path("img.jpg"), "a grey astronaut");
    cr_expect_str_eq(j.action, "written");
    cr_expect_null(j.existing);
    nr_altjob_clear(&j);
    /* A person edits the sidecar; a rerun keeps it. */
    char err[512];
    cr_assert_eq(nr_alttext_write_sidecar(s_path("out"), "img.jpg.xmp", "Edited by a person", err,
                                          sizeof err), 0);
    j = s_job(NR_ALTJOB_SIDECAR, 0, s_path("img.jpg"), "a grey astronaut");
    cr_expect_str_eq(j.action, "kept-existing");
    cr_expect_str_eq(j.existing, "Edited by a person");
    cr_expect_str_eq(j.existing_at, "output");
    nr_altjob_clear(&j);
    char *t = s_indep_alt(s_path("out/img.jpg.xmp"));
    cr_expect_str_eq(t, "Edited by a person");
    free(t);
    /* --overwrite replaces it and the record says what was there. */
    j = s_job(NR_ALTJOB_SIDECAR, 1, s_path("img.jpg"), "a grey astronaut");
    cr_expect_str_eq(j.action, "overwritten");
    cr_expect_str_eq(j.existing, "Edited by a person");
    nr_altjob_clear(&j);
    t = s_indep_alt(s_path("out/img.jpg.xmp"));
    cr_expect_str_eq(t, "a grey astronaut");
    free(t);
}

Test(altjob, embedded_human_alt_text_is_kept, .init = s_setup, .fini = s_teardown) {
    s_make_jpeg_xmp(s_path("img.jpg"), s_human_packet);
    cr_assert_eq(mkdir(s_path("out"), 0700), 0);
    nr_altjob_t j = s_job(NR_ALTJOB_EMBED, 0, s_path("img.jpg"), "a grey astronaut");
    cr_expect_str_eq(j.action, "kept-existing");
    cr_expect_str_eq(j.existing_at, "image");
    cr_expect_str_eq(j.existing, "A person wrote this & means it");
    cr_expect_neq(access(s_path("out/img.jpg"), F_OK), 0, "a copy was written");
    nr_altjob_clear(&j);
    j = s_job(NR_ALTJOB_EMBED, 1, s_path("img.jpg"), "a grey astronaut");
    cr_expect_str_eq(j.action, "overwritten");
    nr_altjob_clear(&j);
    char *t = s_indep_alt(s_path("out/img.jpg")), *o = s_indep_alt(s_path("img.jpg"));
    cr_expect_str_eq(t, "a grey astronaut");
    cr_expect_str_eq(o, "A person wrote this & means it", "the original changed");
    free(t);
    free(o);
}

Test(altjob, long_caption_cut_and_webp_falls_back, .init = s_setup, .fini = s_teardown) {
    size_t n;
    uint8_t *b = s_fixture("astronaut_1000x20.webp", &n);
    s_write(s_path("img.jpg"), b, n); /* WebP bytes: exempi goes by content too */
    free(b);
    cr_assert_eq(mkdir(s_path("out"), 0700), 0);
    char caption[700] = "";
    while (strlen(caption) < 600) strcat(caption, "a very long caption ");
    nr_altjob_t j = s_job(NR_ALTJOB_EMBED, 0, s_path("img.jpg"), caption);
    cr_expect_str_eq(j.action, "sidecar-fallback", "%s", j.note ? j.note : "");
    cr_expect_eq(j.cut, 1);
    cr_expect_leq(strlen(j.text), 250);
    cr_expect_not_null(j.note);
    nr_buf_t buf = {0};
    nr_altjob_json(&buf, &j);
    cr_expect(strstr(buf.data, "\"cut\":true"), "%s", buf.data);
    cr_expect(strstr(buf.data, "\"action\":\"sidecar-fallback\""), "%s", buf.data);
    nr_buf_clear(&buf);
    char *t = s_indep_alt(s_path("out/img.jpg.xmp"));
    cr_expect_str_eq(t ? t : "(none)", j.text);
    free(t);
    nr_altjob_clear(&j);
}

Test(altjob, malformed_existing_xmp_is_left_alone, .init = s_setup, .fini = s_teardown) {
    size_t n;
    uint8_t *b = s_fixture("astronaut_50x40_up.jpg", &n);
    s_write(s_path("img.jpg"), b, n);
    free(b);
    cr_assert_eq(mkdir(s_path("out"), 0700), 0);
    s_write(s_path("out/img.jpg.xmp"), "<x:xmpmeta>human notes <b>", 26);
    nr_altjob_t j = s_job(NR_ALTJOB_SIDECAR, 1, s_path("img.jpg"), "a caption");
    cr_expect_str_eq(j.action, "skipped");
    cr_expect_not_null(j.existing_error);
    cr_expect(strstr(j.note, "malformed"), "%s", j.note);
    nr_altjob_clear(&j);
    uint8_t *raw = s_read(s_path("out/img.jpg.xmp"), &n);
    cr_expect_eq(n, 26);
    free(raw);
}

/* ---- manifest ---- */

Test(manifest, csv_and_jsonl_rows, .init = s_setup, .fini = s_teardown) {
    const char *paths[] = {s_path("run.csv"), s_path("run.jsonl")};
    char err[512];
    nr_manifest_t *m = nr_manifest_new(paths, 2, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    nr_manifest_row_t row = {"in/a,b.jpg", "id1", "done", "a \"big\" dog,\nrunning", "vit-gpt2",
                             "af", "out/a,b.jpg.wav", "written", NULL, NULL};
    cr_assert_eq(nr_manifest_add(m, &row, err, sizeof err), 0, "%s", err);
    /* On disk at once, whole: a run killed now leaves a valid file. */
    size_t n;
    char *now = (char *)s_read(s_path("run.jsonl"), &n);
    cr_expect(n > 0 && now[n - 1] == '\n' && strstr(now, "\"job_id\":\"id1\""), "%s", now);
    free(now);
    now = (char *)s_read(s_path("run.csv"), &n);
    cr_expect(n > 2 && !strcmp(now + n - 2, "\r\n") && strstr(now, "\"id1\""), "%s", now);
    free(now);
    nr_manifest_destroy(&m);
    nr_manifest_destroy(&m);
    char *csv = (char *)s_read(s_path("run.csv"), &n);
    cr_expect_str_eq(csv,
                     "\"source\",\"job_id\",\"state\",\"caption\",\"model\",\"voice\",\"audio\","
                     "\"alt_text_action\",\"error\",\"error_message\"\r\n"
                     "\"in/a,b.jpg\",\"id1\",\"done\",\"a \"\"big\"\" dog,\nrunning\",\"vit-gpt2\","
                     "\"af\",\"out/a,b.jpg.wav\",\"written\",,\r\n");
    free(csv);
    char *jl = (char *)s_read(s_path("run.jsonl"), &n);
    cr_expect_str_eq(jl, "{\"source\":\"in/a,b.jpg\",\"job_id\":\"id1\",\"state\":\"done\","
                         "\"caption\":\"a \\\"big\\\" dog,\\nrunning\",\"model\":\"vit-gpt2\","
                         "\"voice\":\"af\",\"audio\":\"out/a,b.jpg.wav\",\"alt_text_action\":"
                         "\"written\",\"error\":null,\"error_message\":null}\n");
    free(jl);
    /* A link where the manifest goes is refused; a bad extension too. */
    cr_assert_eq(symlink("/etc/passwd", s_path("link.csv")), 0);
    const char *bad[] = {s_path("link.csv")};
    cr_expect_null(nr_manifest_new(bad, 1, err, sizeof err));
    cr_expect(strstr(err, "link"), "%s", err);
    const char *txt[] = {s_path("run.txt")};
    cr_expect_null(nr_manifest_new(txt, 1, err, sizeof err));
}

Test(altjob, in_place_writes_beside_or_into_the_original, .init = s_setup, .fini = s_teardown) {
    s_make_gif(s_path("dot.gif"));
    nr_altjob_params_t side = {NR_ALTJOB_SIDECAR, 1, 0}, embed = {NR_ALTJOB_EMBED, 1, 0};
    nr_altjob_t j = {0};
    nr_altjob_probe(&j, &side, s_path("dot.gif"), s_path("unused"), "dot.gif");
    cr_expect_eq(nr_altjob_apply(&j, &side, s_path("dot.gif"), s_path("unused"), "dot.gif", "a dot"), 0);
    cr_expect_str_eq(j.action, "written");
    cr_expect_str_eq(j.file, s_path("dot.gif.xmp"));
    nr_altjob_clear(&j);
    char *t = s_indep_alt(s_path("dot.gif.xmp"));
    cr_expect_str_eq(t ? t : "(none)", "a dot");
    free(t);
    /* Embedding in place now finds the sidecar beside it and keeps it. */
    nr_altjob_probe(&j, &embed, s_path("dot.gif"), s_path("unused"), "dot.gif");
    nr_altjob_apply(&j, &embed, s_path("dot.gif"), s_path("unused"), "dot.gif", "other words");
    cr_expect_str_eq(j.action, "kept-existing");
    cr_expect_str_eq(j.existing_at, "sidecar");
    nr_altjob_clear(&j);
    cr_assert_eq(rename(s_path("dot.gif.xmp"), s_path("dot.xmp")), 0); /* Lightroom's name */
    nr_altjob_probe(&j, &embed, s_path("dot.gif"), s_path("unused"), "dot.gif");
    cr_expect_str_eq(j.existing ? j.existing : "(none)", "a dot");
    nr_altjob_clear(&j);
    cr_assert_eq(unlink(s_path("dot.xmp")), 0);
    nr_altjob_probe(&j, &embed, s_path("dot.gif"), s_path("unused"), "dot.gif");
    nr_altjob_apply(&j, &embed, s_path("dot.gif"), s_path("unused"), "dot.gif", "other words");
    cr_expect_str_eq(j.action, "written");
    nr_altjob_clear(&j);
    t = s_indep_alt(s_path("dot.gif"));
    cr_expect_str_eq(t ? t : "(none)", "other words");
    free(t);
    cr_expect_neq(access(s_path("unused"), F_OK), 0, "something was written under OUT");
}
