/* Unit tests of the mirrored output tree (client/outtree.h) and of what
 * file collection tells it (client/files.h): same-stem files in one
 * folder, one name in two folders, names that sanitising or case folding
 * would merge, hostile components, a folder named like a file's output,
 * links under the output folder, and a link loop in the input tree. */
#include "client/files.h"
#include "client/output.h"
#include "client/outtree.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_tmp[256];

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void s_setup(void) {
    snprintf(s_tmp, sizeof s_tmp, "/tmp/nr-test-outtree-XXXXXX");
    cr_assert_not_null(mkdtemp(s_tmp));
}

static void s_teardown(void) {
    if (s_tmp[0]) nftw(s_tmp, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static char *s_path(const char *rel) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", s_tmp, rel);
    return p[k];
}

static void s_touch(const char *rel) {
    FILE *f = fopen(s_path(rel), "w");
    cr_assert_not_null(f, "%s", rel);
    fputs("x", f);
    fclose(f);
}

/* Plans rels and checks each (dir, name) against want[2i], want[2i+1]. */
static void s_plan(const char *const *rels, size_t n, const char *const *want) {
    char *dirs[16], *names[16];
    cr_assert_leq(n, 16);
    cr_assert_eq(nr_outtree_plan(rels, n, dirs, names), 0);
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(dirs[i], want[2 * i], "rel %s: dir %s", rels[i], dirs[i]);
        cr_expect_str_eq(names[i], want[2 * i + 1], "rel %s: name %s", rels[i], names[i]);
        free(dirs[i]);
        free(names[i]);
    }
}

Test(outtree, same_stem_and_same_name_in_two_folders) {
    const char *rels[] = {"a/b/001.jpg", "a/b/001.png", "c/001.jpg", "001.jpg", "a/001.jpg"};
    const char *want[] = {"a/b", "001.jpg", "a/b", "001.png", "c", "001.jpg", "", "001.jpg",
                          "a", "001.jpg"};
    s_plan(rels, 5, want);
}

Test(outtree, names_merged_by_sanitising_or_case_get_a_number) {
    const char *rels[] = {"x/a?b.jpg", "x/a*b.jpg", "x/A?B.JPG", "x/cat.jpg", "x/CAT.jpg",
                          "x/a_b-2.jpg"};
    const char *want[] = {"x", "a_b.jpg", "x", "a_b-2.jpg", "x", "A_B-3.JPG", "x", "cat.jpg",
                          "x", "CAT-2.jpg", "x", "a_b-2-2.jpg"};
    s_plan(rels, 6, want);
}

Test(outtree, folders_merged_by_sanitising_stay_apart) {
    const char *rels[] = {"d?/1.jpg", "d*/1.jpg", "d?/2.jpg"};
    const char *want[] = {"d_", "1.jpg", "d_-2", "1.jpg", "d_", "2.jpg"};
    s_plan(rels, 3, want);
}

Test(outtree, a_folder_named_like_an_output_is_moved_aside) {
    /* x.jpg's outputs are x.jpg.txt, .wav, .json, .xmp: a folder of that
     * name, before or after it in order, gets another name. */
    const char *rels[] = {"x.jpg", "x.jpg.txt/1.jpg", "y.jpg.json/1.jpg", "y.jpg"};
    const char *want[] = {"", "x.jpg", "x.jpg.txt-2", "1.jpg", "y.jpg.json", "1.jpg", "",
                          "y-2.jpg"};
    s_plan(rels, 4, want);
}

Test(outtree, hostile_components_stay_inside) {
    const char *rels[] = {"../../etc/passwd.jpg", "/abs/x.jpg", "./a//b/./c.jpg", ".hidden/.x.jpg",
                          "", "a/"};
    char *dirs[6], *names[6];
    cr_assert_eq(nr_outtree_plan(rels, 6, dirs, names), 0);
    for (int i = 0; i < 6; i++) {
        cr_expect(nr_output_name_safe(names[i]), "%s gave name %s", rels[i], names[i]);
        char *copy = strdup(dirs[i]);
        for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
            cr_expect(nr_output_name_safe(c), "%s gave folder %s", rels[i], dirs[i]);
        free(copy);
        cr_expect(dirs[i][0] != '/', "%s gave %s", rels[i], dirs[i]);
    }
    cr_expect_str_eq(dirs[0], "_./_./etc");
    cr_expect_str_eq(dirs[1], "abs");
    cr_expect_str_eq(dirs[2], "a/b");
    cr_expect_str_eq(names[2], "c.jpg");
    cr_expect_str_eq(dirs[3], "_hidden");
    cr_expect_str_eq(names[3], "_x.jpg");
    cr_expect_str_eq(names[4], "image");
    for (int i = 0; i < 6; i++) {
        free(dirs[i]);
        free(names[i]);
    }
}

Test(outtree, mkdir_refuses_links_on_the_way, .init = s_setup, .fini = s_teardown) {
    char err[512];
    cr_assert_eq(mkdir(s_path("out"), 0700), 0);
    cr_assert_eq(mkdir(s_path("elsewhere"), 0700), 0);
    cr_assert_eq(symlink(s_path("elsewhere"), s_path("out/a")), 0);
    cr_expect_eq(nr_outtree_mkdir(s_path("out"), "a/b", err, sizeof err), NR_EIO);
    cr_expect(strstr(err, "link"), "%s", err);
    struct stat st;
    cr_expect_neq(stat(s_path("elsewhere/b"), &st), 0, "a folder was made through the link");
    cr_expect_eq(nr_outtree_mkdir(s_path("out"), "c/d/e", err, sizeof err), 0, "%s", err);
    cr_expect_eq(stat(s_path("out/c/d/e"), &st), 0);
    cr_expect(S_ISDIR(st.st_mode));
    cr_expect_eq(nr_outtree_mkdir(s_path("out"), "c/d/e", err, sizeof err), 0, "again: %s", err);
    cr_expect_eq(nr_outtree_mkdir(s_path("out"), "../x", err, sizeof err), NR_EINVAL);
}

/* Collecting a tree with a link loop and a link to a file outside it:
 * the loop is not followed, the outside file is taken under its link's
 * name, and each path's part under the root is what the tree shows. */
Test(outtree, collect_gives_paths_under_the_root, .init = s_setup, .fini = s_teardown) {
    char err[512];
    cr_assert_eq(mkdir(s_path("root"), 0700), 0);
    cr_assert_eq(mkdir(s_path("root/a"), 0700), 0);
    cr_assert_eq(mkdir(s_path("root/a/b"), 0700), 0);
    s_touch("root/a/b/001.jpg");
    s_touch("root/a/b/001.png");
    s_touch("root/a/001.jpg");
    s_touch("outside.jpg");
    cr_assert_eq(symlink(s_path("root"), s_path("root/a/loop")), 0);
    cr_assert_eq(symlink(s_path("outside.jpg"), s_path("root/a/link.jpg")), 0);
    nr_files_t f;
    nr_files_init(&f);
    char root[600];
    snprintf(root, sizeof root, "%s/root/", s_tmp); /* a trailing '/' too */
    cr_assert_eq(nr_files_collect(&f, root, err, sizeof err), 0, "%s", err);
    s_touch("single.png");
    cr_assert_eq(nr_files_collect(&f, s_path("single.png"), err, sizeof err), 0, "%s", err);
    const char *want[] = {"a/001.jpg", "a/b/001.jpg", "a/b/001.png", "a/link.jpg", "single.png"};
    cr_assert_eq(f.len, 5);
    for (size_t i = 0; i < f.len; i++)
        cr_expect_str_eq(f.paths[i] + f.rel_at[i], want[i], "%s", f.paths[i]);
    nr_files_clear(&f);
}

/* A --files-from list: relative, "./", absolute and ".." entries, a
 * folder, a missing file and blank lines. Outputs mirror each path as
 * listed and stay inside; the missing one is skipped with its reason. */
Test(outtree, list_file_entries_mirror_their_paths, .init = s_setup, .fini = s_teardown) {
    char err[512];
    cr_assert_eq(mkdir(s_path("root"), 0700), 0);
    cr_assert_eq(mkdir(s_path("root/a"), 0700), 0);
    cr_assert_eq(mkdir(s_path("root/a/b"), 0700), 0);
    cr_assert_eq(mkdir(s_path("sub"), 0700), 0);
    s_touch("root/a/b/001.jpg");
    s_touch("root/a/001.jpg");
    s_touch("outside.jpg");
    cr_assert_eq(chdir(s_tmp), 0);
    FILE *f = fopen("list.txt", "w");
    cr_assert_not_null(f);
    fprintf(f, "root/a/b/001.jpg\n./root/a/001.jpg\r\n\n%s/outside.jpg\nmissing.jpg\n"
               "sub/../root/a/001.jpg\nroot/a/b\n", s_tmp);
    fclose(f);
    nr_files_t files;
    nr_files_init(&files);
    cr_assert_eq(nr_files_collect_list(&files, "list.txt", err, sizeof err), 0, "%s", err);
    cr_assert_eq(files.len, 5);
    cr_assert_eq(files.n_skipped, 1);
    cr_expect(strstr(files.skipped[0], "missing.jpg: No such file"), "%s", files.skipped[0]);
    const char *rels[5];
    for (size_t i = 0; i < 5; i++) rels[i] = files.paths[i] + files.rel_at[i];
    cr_expect_str_eq(rels[0], "root/a/b/001.jpg");
    cr_expect_str_eq(rels[1], "root/a/001.jpg");
    char abs[600];
    snprintf(abs, sizeof abs, "%s/outside.jpg", s_tmp + 1);
    cr_expect_str_eq(rels[2], abs);
    cr_expect_str_eq(rels[3], "sub/../root/a/001.jpg");
    cr_expect_str_eq(rels[4], "root/a/b/001.jpg");
    char *dirs[5], *names[5];
    cr_assert_eq(nr_outtree_plan(rels, 5, dirs, names), 0);
    cr_expect_str_eq(dirs[0], "root/a/b");
    cr_expect_str_eq(dirs[1], "root/a");
    cr_expect_str_eq(dirs[3], "sub/_./root/a");
    /* The same file listed twice (directly, then in its folder) gets two
     * names, never one output written by two jobs. */
    cr_expect_str_eq(names[0], "001.jpg");
    cr_expect_str_eq(dirs[4], "root/a/b");
    cr_expect_str_eq(names[4], "001-2.jpg");
    for (int i = 0; i < 5; i++) {
        free(dirs[i]);
        free(names[i]);
    }
    nr_files_clear(&files);
    cr_expect_eq(nr_files_collect_list(&files, "nope.txt", err, sizeof err), NR_EIO);
}
