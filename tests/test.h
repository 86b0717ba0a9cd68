/*
 * tests/test.h - the one test registry behind `make test`.
 *
 *     #include "tests/test.h"
 *     TEST(store_open_missing_dir) {
 *         h2t_store *st = NULL;
 *         ASSERT_EQ(h2t_store_open("nope", 0, &st), H2T_ENOTFOUND);
 *     }
 *
 * Each test runs in a forked child, inside a fresh empty temporary directory (the child's
 * working directory; removed afterwards), with a timeout (TEST_TIMEOUT(name, seconds) for a
 * longer one). ASSERT_* print file:line and both values, then fail the test. Fixtures under
 * the source tree are found with test_src_path("tests/data/x").
 */
#ifndef H2T_TESTS_TEST_H
#define H2T_TESTS_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, int timeout_s);
/* Absolute path of a file in the source tree (static buffer ring of 8). */
const char *test_src_path(const char *rel);
/* Absolute path of this test's temporary directory. */
const char *test_tmpdir(void);
void test_fail(void) __attribute__((noreturn));

#define TEST_TIMEOUT(name, secs)                                                                   \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_reg_##name(void)                                 \
    {                                                                                              \
        test_register(#name, test_##name, (secs));                                                 \
    }                                                                                              \
    static void test_##name(void)
#define TEST(name) TEST_TIMEOUT(name, 60)

#define TEST_FAILF(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        test_fail();                                                                               \
    } while (0)

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            TEST_FAILF("assertion failed: %s", #c);                                                \
    } while (0)

#define ASSERT_OP_(a, op, b, T, fmt)                                                               \
    do {                                                                                           \
        T a_ = (a), b_ = (b);                                                                      \
        if (!(a_ op b_))                                                                           \
            TEST_FAILF("expected %s %s %s: " fmt " vs " fmt, #a, #op, #b, a_, b_);                 \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_OP_(a, ==, b, long long, "%lld")
#define ASSERT_NE(a, b) ASSERT_OP_(a, !=, b, long long, "%lld")
#define ASSERT_LT(a, b) ASSERT_OP_(a, <, b, long long, "%lld")
#define ASSERT_LE(a, b) ASSERT_OP_(a, <=, b, long long, "%lld")
#define ASSERT_GT(a, b) ASSERT_OP_(a, >, b, long long, "%lld")
#define ASSERT_GE(a, b) ASSERT_OP_(a, >=, b, long long, "%lld")
#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0)                                                                              \
            TEST_FAILF("%s returned %d (%s: %s)", #expr, rc_, h2t_strerror(rc_),                   \
                       h2t_err_detail());                                                          \
    } while (0)
#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_))                                                          \
            TEST_FAILF("expected %s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)",          \
                       b_ ? b_ : "(null)");                                                        \
    } while (0)
#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            TEST_FAILF("expected %s to contain \"%s\": \"%s\"", #hay, n_, h_ ? h_ : "(null)");     \
    } while (0)
#define ASSERT_NEAR(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b), t_ = (tol);                                                     \
        if (!(fabs(a_ - b_) <= t_))                                                                \
            TEST_FAILF("expected %s ~= %s (tol %g): %.9g vs %.9g", #a, #b, t_, a_, b_);            \
    } while (0)

#endif
