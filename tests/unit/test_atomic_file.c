/* io/atomic_file: commit replaces, abort keeps the old file, failures name the path and leave no temp file. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "ref/test_util.h"

typedef struct scratch {
    char dir[256];
    char target[300];
} scratch;

/* A fresh directory per test, so that "no temp file behind" can be checked by listing it. */
static void scratch_make(scratch *s)
{
    snprintf(s->dir, sizeof s->dir, "%s", test_temp_path("-atomic"));
    assert_int_equal(mkdir(s->dir, 0755), 0);
    snprintf(s->target, sizeof s->target, "%s/state.json", s->dir);
}

/* Each test removes what it made; rmdir failing would mean a stray temp file. */
static void scratch_remove(scratch *s)
{
    assert_int_equal(rmdir(s->dir), 0);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void assert_file_holds(const char *path, const char *want)
{
    char got[256] = {0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    assert_int_equal(n, strlen(want));
    assert_string_equal(got, want);
}

static void test_commit_replaces_the_old_file(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    TEST_OK(kelp_atomic_write(s.target, "old", 3));

    kelp_atomic_file *f;
    TEST_OK(kelp_atomic_open(s.target, &f));
    fputs("new content", kelp_atomic_stream(f));
    /* Until the commit, readers see the old file and the new bytes sit in a temp file beside it. */
    assert_file_holds(s.target, "old");
    assert_int_equal(count_entries(s.dir), 2);
    const char *temp = kelp_atomic_temp_path(f);
    assert_int_equal(strncmp(temp, s.dir, strlen(s.dir)), 0);
    assert_ptr_equal(strrchr(temp, '/'), temp + strlen(s.dir));
    TEST_OK(kelp_atomic_commit(f));

    assert_file_holds(s.target, "new content");
    assert_int_equal(count_entries(s.dir), 1);
    remove(s.target);
    scratch_remove(&s);
}

static void test_abort_keeps_the_old_file_and_no_temp(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    TEST_OK(kelp_atomic_write(s.target, "old", 3));

    kelp_atomic_file *f;
    TEST_OK(kelp_atomic_open(s.target, &f));
    char temp[600];
    snprintf(temp, sizeof temp, "%s", kelp_atomic_temp_path(f));
    fputs("half-written garbage", kelp_atomic_stream(f));
    kelp_atomic_abort(f);

    assert_file_holds(s.target, "old");
    assert_int_equal(access(temp, F_OK), -1);
    assert_int_equal(count_entries(s.dir), 1);
    kelp_atomic_abort(NULL);
    remove(s.target);
    scratch_remove(&s);
}

static void test_write_creates_a_file_with_umask_mode(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    mode_t old_mask = umask(022);
    TEST_OK(kelp_atomic_write(s.target, "", 0));
    umask(old_mask);

    struct stat st;
    assert_int_equal(stat(s.target, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* Like fopen, not like mkstemp's 0600: a checkpoint must stay readable by the user's other tools. */
    assert_int_equal(st.st_mode & 0777, 0644);
    remove(s.target);
    scratch_remove(&s);
}

static void test_two_writers_get_distinct_temp_files(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    kelp_atomic_file *a, *b;
    TEST_OK(kelp_atomic_open(s.target, &a));
    TEST_OK(kelp_atomic_open(s.target, &b));
    assert_string_not_equal(kelp_atomic_temp_path(a), kelp_atomic_temp_path(b));
    fputs("from a", kelp_atomic_stream(a));
    fputs("from b", kelp_atomic_stream(b));
    TEST_OK(kelp_atomic_commit(a));
    TEST_OK(kelp_atomic_commit(b));
    assert_file_holds(s.target, "from b");
    assert_int_equal(count_entries(s.dir), 1);
    remove(s.target);
    scratch_remove(&s);
}

static void test_missing_directory_names_the_path(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    char path[600];
    snprintf(path, sizeof path, "%s/no-such-dir/weights.safetensors", s.dir);
    static int sentinel;
    kelp_atomic_file *f = (kelp_atomic_file *)&sentinel; /* proves the failure resets *out */
    TEST_FAILS_WITH(kelp_atomic_open(path, &f), KELP_ERR_IO, path);
    assert_null(f);
    TEST_FAILS_WITH(kelp_atomic_write(path, "x", 1), KELP_ERR_IO, "No such file or directory");
    assert_int_equal(count_entries(s.dir), 0);
    scratch_remove(&s);
}

static void test_unwritable_directory_names_the_path(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    char path[600];
    /* root ignores permission bits; sysfs refuses to create files even for root. */
    if (geteuid() == 0)
        snprintf(path, sizeof path, "/sys/kelp-atomic-test");
    else {
        assert_int_equal(chmod(s.dir, 0555), 0);
        snprintf(path, sizeof path, "%s", s.target);
    }
    TEST_FAILS_WITH(kelp_atomic_write(path, "x", 1), KELP_ERR_IO, path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(chmod(s.dir, 0755), 0);
    assert_int_equal(count_entries(s.dir), 0);
    scratch_remove(&s);
}

static void test_parent_that_is_a_file_names_the_path(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    TEST_OK(kelp_atomic_write(s.target, "plain file", 10));
    char path[600];
    snprintf(path, sizeof path, "%s/inside", s.target);
    TEST_FAILS_WITH(kelp_atomic_write(path, "x", 1), KELP_ERR_IO, path);
    assert_file_holds(s.target, "plain file");
    remove(s.target);
    scratch_remove(&s);
}

/* The rename fails after the data was written: the temp file must still go, and the target stay. */
static void test_failed_rename_removes_the_temp(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    char sub[600], inner[700];
    snprintf(sub, sizeof sub, "%s/checkpoint", s.dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(inner, sizeof inner, "%s/keep", sub);
    TEST_OK(kelp_atomic_write(inner, "kept", 4));

    kelp_atomic_file *f;
    TEST_OK(kelp_atomic_open(sub, &f));
    fputs("would replace a non-empty directory", kelp_atomic_stream(f));
    TEST_FAILS_WITH(kelp_atomic_commit(f), KELP_ERR_IO, sub);
    assert_int_equal(count_entries(s.dir), 1);
    assert_file_holds(inner, "kept");
    remove(inner);
    rmdir(sub);
    scratch_remove(&s);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    kelp_atomic_file *f;
    TEST_FAILS_WITH(kelp_atomic_open("", &f), KELP_ERR_INVALID_ARG, "empty path");
    TEST_FAILS_WITH(kelp_atomic_open(NULL, &f), KELP_ERR_INVALID_ARG, "empty path");
    TEST_FAILS_WITH(kelp_atomic_commit(NULL), KELP_ERR_INVALID_ARG, "NULL");
    scratch s;
    scratch_make(&s);
    TEST_FAILS_WITH(kelp_atomic_write(s.target, NULL, 4), KELP_ERR_INVALID_ARG, s.target);
    assert_int_equal(count_entries(s.dir), 0);
    scratch_remove(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_replaces_the_old_file),
        cmocka_unit_test(test_abort_keeps_the_old_file_and_no_temp),
        cmocka_unit_test(test_write_creates_a_file_with_umask_mode),
        cmocka_unit_test(test_two_writers_get_distinct_temp_files),
        cmocka_unit_test(test_missing_directory_names_the_path),
        cmocka_unit_test(test_unwritable_directory_names_the_path),
        cmocka_unit_test(test_parent_that_is_a_file_names_the_path),
        cmocka_unit_test(test_failed_rename_removes_the_temp),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
