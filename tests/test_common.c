#include "common/blas.h"
#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"
#include "extract/extract.h"
#include "extract/kern.h"
#include "tests/test.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* h2t_crc32c (the SSE4.2 instruction where the CPU has it) equals the bitwise definition for
 * every length and alignment up to 100 bytes */
TEST(common_crc32c_matches_bitwise)
{
    uint8_t buf[128];
    for (int i = 0; i < 128; i++)
        buf[i] = (uint8_t)(i * 37 + 11);
    for (size_t a = 0; a < 8; a++)
        for (size_t n = 0; n <= 100; n++) {
            uint32_t c = 0xffffffffu;
            for (size_t i = 0; i < n; i++) {
                c ^= buf[a + i];
                for (int k = 0; k < 8; k++)
                    c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
            }
            ASSERT_EQ(h2t_crc32c(0, buf + a, n), ~c);
        }
}

/* Long buffers (three interleaved chains joined by shift tables on x86-64, in rounds of 3 x
 * 8192 and 3 x 256 bytes) equal the bitwise definition around every round boundary, at any
 * alignment, and chained calls split anywhere equal one call */
TEST(common_crc32c_long_matches_bitwise)
{
    enum { MAX = 100003 + 8 };
    uint8_t *buf = malloc(MAX);
    uint32_t *def = malloc(sizeof(uint32_t) * (MAX + 1));
    ASSERT(buf && def);
    uint64_t x = 0x243f6a8885a308d3ull;
    for (int i = 0; i < MAX; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)(x >> 32);
    }
    static const size_t lens[] = {767,   768,   769,   1000,  1536,  2303,  2304,  24575,
                                  24576, 24577, 25343, 25344, 25350, 49152, 50000, 100003};
    for (size_t a = 0; a < 4; a++) {
        /* the definition's register after every prefix of buf + a */
        uint32_t c = 0xffffffffu;
        def[0] = c;
        for (size_t i = 0; i + a < MAX; i++) {
            c ^= buf[a + i];
            for (int k = 0; k < 8; k++)
                c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
            def[i + 1] = c;
        }
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            size_t n = lens[k];
            if (h2t_crc32c(0, buf + a, n) != ~def[n])
                TEST_FAILF("length %zu at alignment %zu", n, a);
            size_t cut = (n * 7) / 13 + a;
            ASSERT_EQ(h2t_crc32c(h2t_crc32c(0, buf + a, cut), buf + a + cut, n - cut), ~def[n]);
        }
    }
    free(buf);
    free(def);
}

TEST(common_crc32c_known_vector)
{
    /* RFC 3720 B.4: 32 bytes of zeros -> 0x8a9136aa; "123456789" -> 0xe3069283 */
    uint8_t z[32] = {0};
    ASSERT_EQ(h2t_crc32c(0, z, 32), 0x8a9136aau);
    ASSERT_EQ(h2t_crc32c(0, "123456789", 9), 0xe3069283u);
    /* chaining equals one call */
    ASSERT_EQ(h2t_crc32c(h2t_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

/* ---- SHA-256: every ISA (the SHA-NI request runs C on a CPU without it) ---- */

static const int sha_isas[2] = {H2T_SHA256_ISA_C, H2T_SHA256_ISA_SHANI};

static void sha_hex(const void *p, size_t n, int isa, char hex[65])
{
    h2t_sha256 s;
    uint8_t d[32];
    h2t_sha256_init(&s);
    h2t_sha256_update_isa(&s, p, n, isa);
    h2t_sha256_final_isa(&s, d, isa);
    h2t_hex(d, 32, hex);
}

TEST(common_sha256_known_vector)
{
    /* FIPS 180-2 / NIST CAVS examples: one block, two blocks (56 and 112 bytes), empty */
    static const struct {
        const char *msg, *hex;
    } v[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "m"
         "nopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            sha_hex(v[i].msg, strlen(v[i].msg), sha_isas[k], hex);
            ASSERT_STREQ(hex, v[i].hex);
        }
    /* the default entry points */
    h2t_sha256 s;
    uint8_t d[32];
    h2t_sha256_init(&s);
    h2t_sha256_update(&s, "abc", 3);
    h2t_sha256_final(&s, d);
    h2t_hex(d, 32, hex);
    ASSERT_STREQ(hex, v[0].hex);
    ASSERT(h2t_sha256_isa_best() == H2T_SHA256_ISA_C ||
           h2t_sha256_isa_best() == H2T_SHA256_ISA_SHANI);
    fprintf(stderr, "  sha256 best isa here: %s\n", h2t_sha256_isa_name(h2t_sha256_isa_best()));

    FILE *f = fopen("x", "wb");
    for (int i = 0; i < 1000; i++)
        fputs("abcdefghijklmnopqrstuvwxyz0123456789", f);
    fclose(f);
    uint8_t d2[32];
    ASSERT_OK(h2t_sha256_file("x", d2));
    h2t_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        h2t_sha256_update(&s, "abcdefghijklmnopqrstuvwxyz0123456789", 36);
    h2t_sha256_final(&s, d);
    ASSERT(memcmp(d, d2, 32) == 0);
    ASSERT_EQ(h2t_sha256_file("missing", d2), H2T_EIO);
    ASSERT_CONTAINS(h2t_err_detail(), "missing");
}

TEST(common_sha256_long_unaligned)
{
    /* one million 'a' (FIPS 180-2), in pieces of 1000 and in one call */
    size_t n = 1000000;
    char *a = malloc(n);
    ASSERT(a != NULL);
    memset(a, 'a', n);
    char hex[65];
    for (int k = 0; k < 2; k++) {
        sha_hex(a, n, sha_isas[k], hex);
        ASSERT_STREQ(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        h2t_sha256 s;
        uint8_t d[32];
        h2t_sha256_init(&s);
        for (size_t i = 0; i < n; i += 1000)
            h2t_sha256_update_isa(&s, a + i, 1000, sha_isas[k]);
        h2t_sha256_final_isa(&s, d, sha_isas[k]);
        h2t_hex(d, 32, hex);
        ASSERT_STREQ(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
    free(a);
    /* 1000002 splitmix64 bytes (seed 1, low byte of each draw, the first one skipped) read from
     * an odd address; the digest is Python hashlib's on the same bytes */
    uint8_t *b = malloc(1000003);
    ASSERT(b != NULL);
    uint64_t r = 1;
    for (size_t i = 0; i < 1000003; i++)
        b[i] = (uint8_t)h2t_rng_next(&r);
    for (int k = 0; k < 2; k++) {
        sha_hex(b + 1, 1000002, sha_isas[k], hex);
        ASSERT_STREQ(hex, "bff7e270b43e3d8a604893b7104a1476010bcb7392e6003c81d5264fc1d3e967");
    }
    free(b);
}

TEST(common_sha256_splits_and_isas_agree)
{
    /* every length 0..300 (the padding edges 55, 56, 63, 64, 119, 120 among them) at every
     * offset 0..7, split in random pieces, each piece through a random ISA: the digest equals
     * the one-call C digest; the one-call SHA-NI digest too */
    uint8_t buf[320];
    uint64_t r = 42;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)h2t_rng_next(&r);
    for (size_t len = 0; len <= 300; len++)
        for (size_t off = 0; off < 8; off++) {
            const uint8_t *p = buf + off;
            uint8_t ref[32], d[32];
            h2t_sha256 s;
            h2t_sha256_init(&s);
            h2t_sha256_update_isa(&s, p, len, H2T_SHA256_ISA_C);
            h2t_sha256_final_isa(&s, ref, H2T_SHA256_ISA_C);
            h2t_sha256_init(&s);
            h2t_sha256_update_isa(&s, p, len, H2T_SHA256_ISA_SHANI);
            h2t_sha256_final_isa(&s, d, H2T_SHA256_ISA_SHANI);
            if (memcmp(ref, d, 32))
                TEST_FAILF("one call: len %zu off %zu: C and SHA-NI differ", len, off);
            for (int pat = 0; pat < 4; pat++) {
                h2t_sha256_init(&s);
                size_t at = 0;
                while (at < len) {
                    /* pieces of 0..2 bytes, 0..70 bytes, 0..200 bytes, or one byte */
                    size_t lim = pat == 0 ? 3 : pat == 1 ? 71 : pat == 2 ? 201 : 2;
                    size_t k = pat == 3 ? 1 : (size_t)(h2t_rng_next(&r) % lim);
                    if (k > len - at)
                        k = len - at;
                    h2t_sha256_update_isa(&s, p + at, k, sha_isas[h2t_rng_next(&r) & 1]);
                    at += k;
                }
                h2t_sha256_final_isa(&s, d, sha_isas[h2t_rng_next(&r) & 1]);
                if (memcmp(ref, d, 32))
                    TEST_FAILF("len %zu off %zu split pattern %d: digest differs", len, off, pat);
            }
        }
    /* long inputs: 1 MiB + 77 random bytes, every split at a prime stride, both ISAs */
    size_t n = (1u << 20) + 77;
    uint8_t *big = malloc(n + 1);
    ASSERT(big != NULL);
    for (size_t i = 0; i < n + 1; i++)
        big[i] = (uint8_t)h2t_rng_next(&r);
    uint8_t ref[32], d[32];
    h2t_sha256 s;
    h2t_sha256_init(&s);
    h2t_sha256_update_isa(&s, big + 1, n, H2T_SHA256_ISA_C);
    h2t_sha256_final_isa(&s, ref, H2T_SHA256_ISA_C);
    static const size_t strides[] = {1, 63, 64, 65, 4099, 65537, 300007};
    for (size_t t = 0; t < sizeof strides / sizeof strides[0]; t++)
        for (int k = 0; k < 2; k++) {
            if (strides[t] == 1 && k == 0)
                continue; /* a million one-byte C calls: slow under the sanitizers, no news */
            h2t_sha256_init(&s);
            for (size_t at = 0; at < n; at += strides[t])
                h2t_sha256_update_isa(&s, big + 1 + at, at + strides[t] <= n ? strides[t] : n - at,
                                      sha_isas[k]);
            h2t_sha256_final_isa(&s, d, sha_isas[k]);
            if (memcmp(ref, d, 32))
                TEST_FAILF("1 MiB: stride %zu isa %d: digest differs", strides[t], k);
        }
    free(big);
}

TEST(common_f16_roundtrip)
{
    ASSERT_EQ(h2t_f32_to_f16(1.0f), 0x3c00);
    ASSERT_EQ(h2t_f32_to_f16(-2.0f), 0xc000);
    ASSERT_EQ(h2t_f32_to_f16(65504.0f), 0x7bff);
    ASSERT_EQ(h2t_f32_to_f16(1e6f), 0x7c00);
    ASSERT_EQ(h2t_f32_to_f16(5.9604645e-8f), 0x0001);
    for (uint32_t h = 0; h < 0x7c00; h++)
        ASSERT_EQ(h2t_f32_to_f16(h2t_f16_to_f32((uint16_t)h)), h);
    ASSERT_NEAR(h2t_f16_to_f32(h2t_f32_to_f16(0.1f)), 0.1, 1e-4);
}

TEST(common_err_detail)
{
    ASSERT_EQ(h2t_err_set(H2T_ENOTFOUND, "layer %s", "conv1"), H2T_ENOTFOUND);
    h2t_err_wrap(H2T_ENOTFOUND, "extraction %d", 3);
    ASSERT_STREQ(h2t_err_detail(), "extraction 3: layer conv1");
    char buf[128];
    ASSERT_STREQ(h2t_err_format(H2T_ENOTFOUND, buf, sizeof buf),
                 "not found: extraction 3: layer conv1");
    ASSERT_STREQ(h2t_strerror(-999), "unknown error");
}

TEST(common_addr_split)
{
    char host[64];
    long port;
    int v6;
    ASSERT_OK(h2t_addr_split("10.1.2.3:7433", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "10.1.2.3");
    ASSERT_EQ(port, 7433);
    ASSERT_EQ(v6, 0);
    ASSERT_OK(h2t_addr_split("8080", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "127.0.0.1");
    ASSERT_EQ(port, 8080);
    ASSERT_OK(h2t_addr_split("localhost:0", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "127.0.0.1");
    ASSERT_EQ(port, 0);
    ASSERT_OK(h2t_addr_split("[::1]:9", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "::1");
    ASSERT_EQ(v6, 1);
    ASSERT_EQ(h2t_addr_split("h:70000", "listen address", host, sizeof host, &port, &v6),
              H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "listen address 'h:70000': bad port '70000'");
    ASSERT_EQ(h2t_addr_split("[::1]9", "a", host, sizeof host, &port, &v6), H2T_EINVAL);
    ASSERT_EQ(h2t_addr_split("h:", "a", host, sizeof host, &port, &v6), H2T_EINVAL);
    char tiny[4];
    ASSERT_EQ(h2t_addr_split("longhost:1", "a", tiny, sizeof tiny, &port, &v6), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "too long");
}

/* Every header's usage example compiles (tests/header_examples.sh), and the check
 * fails on an example that does not: a header whose example calls a function with one
 * argument too many, as an out-of-date example would. */
TEST_TIMEOUT(common_header_examples, 300)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "sh %s >examples.log 2>&1",
             test_src_path("tests/header_examples.sh"));
    int rc = system(cmd);
    if (rc != 0)
        ASSERT_EQ(system("cat examples.log >&2"), 0);
    ASSERT_EQ(rc, 0);

    char cwd[4096];
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    FILE *f = fopen("stale.h", "w");
    ASSERT(f != NULL);
    fputs("/*\n * stale.h - a header whose example no longer matches the function.\n *\n"
          " *     int r = stale_add(1, 2, 3);\n *\n */\n"
          "int stale_add(int a, int b);\n",
          f);
    ASSERT_EQ(fclose(f), 0);
    snprintf(cmd, sizeof(cmd), "sh %s %s/stale.h >stale.log 2>&1",
             test_src_path("tests/header_examples.sh"), cwd);
    rc = system(cmd);
    ASSERT(rc != -1 && WIFEXITED(rc));
    ASSERT_EQ(WEXITSTATUS(rc), 1);
    ASSERT_EQ(system("grep -q 'the example in .*stale.h does not compile' stale.log"), 0);
}

/* make install with PREFIX and DESTDIR (tests/install_check.sh): the binary, the library, the
 * pkg-config file and the public headers land under DESTDIR/PREFIX, and a program including
 * every installed header builds with `pkg-config --cflags --libs h2tdb` alone and runs. */
TEST_TIMEOUT(common_install, 300)
{
    char cwd[4096], cmd[8192];
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(cmd, sizeof(cmd), "sh %s %s >install.log 2>&1",
             test_src_path("tests/install_check.sh"), cwd);
    int rc = system(cmd);
    if (rc != 0)
        ASSERT_EQ(system("cat install.log >&2"), 0);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(system("grep -q 'install_check: ok' install.log"), 0);
    ASSERT_EQ(access("dest/opt/h2t/lib/pkgconfig/h2tdb.pc", F_OK), 0);
}

/* The one CPU probe: its answer is consistent (a feature that needs another comes with it),
 * agrees with the compiler's own probe where both know the feature, and H2T_CPU_MAX lowers it
 * for every module that dispatches on it (pooling, kernels, SHA-256). */
TEST(common_cpu_probe_and_limit)
{
    unsigned f = h2t_cpu_features();
    ASSERT_EQ(h2t_cpu_has(0), 1);
    ASSERT_EQ(h2t_cpu_has(f), 1);
    if (f & (H2T_CPU_AVX2 | H2T_CPU_FMA | H2T_CPU_F16C | H2T_CPU_AVX512F))
        ASSERT(f & H2T_CPU_AVX);
    if (f & H2T_CPU_SHA)
        ASSERT((f & (H2T_CPU_SSSE3 | H2T_CPU_SSE41)) == (H2T_CPU_SSSE3 | H2T_CPU_SSE41));
#if defined(__x86_64__) && defined(__GNUC__)
    ASSERT(f & H2T_CPU_SSE2);
    if (!getenv("H2T_CPU_MAX")) {
        __builtin_cpu_init();
        ASSERT_EQ(h2t_cpu_has(H2T_CPU_AVX), __builtin_cpu_supports("avx") ? 1 : 0);
        ASSERT_EQ(h2t_cpu_has(H2T_CPU_AVX2), __builtin_cpu_supports("avx2") ? 1 : 0);
        ASSERT_EQ(h2t_cpu_has(H2T_CPU_FMA), __builtin_cpu_supports("fma") ? 1 : 0);
        ASSERT_EQ(h2t_cpu_has(H2T_CPU_AVX512F), __builtin_cpu_supports("avx512f") ? 1 : 0);
    }
#endif
    char names[128];
    h2t_cpu_describe(names, sizeof names);
    if (f & H2T_CPU_SSE2)
        ASSERT(strncmp(names, "sse2", 4) == 0);
    char tiny[6];
    h2t_cpu_describe(tiny, sizeof tiny); /* truncated, still a string */
    ASSERT(strlen(tiny) < sizeof tiny);

    /* the limits: each a subset of the full answer, each level within the next */
    const char *levels[] = {"sse2", "sse4", "avx", "avx2", "avx512"};
    unsigned prev = 0;
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(setenv("H2T_CPU_MAX", levels[i], 1), 0);
        h2t_cpu_reset();
        unsigned g = h2t_cpu_features();
        ASSERT_EQ(g & ~f, 0u);
        ASSERT_EQ(prev & ~g, 0u);
        prev = g;
    }
    ASSERT_EQ(prev, f); /* avx512: no limit */

    ASSERT_EQ(setenv("H2T_CPU_MAX", "sse2", 1), 0);
    h2t_cpu_reset();
    ASSERT_EQ(h2t_cpu_features() & ~(unsigned)H2T_CPU_SSE2, 0u);
    ASSERT_EQ(h2t_pool_isa_best(), H2T_POOL_ISA_GENERIC);
    ASSERT_EQ(h2t_kern_isa(), H2T_ISA_C);
    ASSERT_EQ(h2t_sha256_isa_best(), H2T_SHA256_ISA_C);
    char disp[128];
    h2t_kern_describe(disp, sizeof disp); /* what bench/extract prints for h2tdb's side */
    ASSERT_STREQ(disp,
                 "depthwise3x3 c, depthwise c, conv-epilogue c, pool-ops c, nn c, pooling generic");

    ASSERT_EQ(setenv("H2T_CPU_MAX", "avx2", 1), 0);
    h2t_cpu_reset();
    ASSERT_EQ(h2t_kern_isa(), (f & (H2T_CPU_AVX | H2T_CPU_FMA)) == (H2T_CPU_AVX | H2T_CPU_FMA)
                                  ? H2T_ISA_AVX_FMA
                                  : H2T_ISA_C);
    ASSERT_EQ(h2t_pool_isa_best(), (f & H2T_CPU_AVX) ? H2T_POOL_ISA_AVX : H2T_POOL_ISA_GENERIC);

    ASSERT_EQ(setenv("H2T_CPU_MAX", "avx", 1), 0);
    h2t_cpu_reset();
    ASSERT_EQ(h2t_cpu_has(H2T_CPU_AVX2) + h2t_cpu_has(H2T_CPU_FMA), 0);
    ASSERT_EQ(h2t_kern_isa(), H2T_ISA_C); /* the depthwise kernels need FMA */
    ASSERT_EQ(h2t_pool_isa_best(), (f & H2T_CPU_AVX) ? H2T_POOL_ISA_AVX : H2T_POOL_ISA_GENERIC);

    ASSERT_EQ(setenv("H2T_CPU_MAX", "pentium", 1), 0); /* unknown: ignored (with a warning) */
    h2t_cpu_reset();
    ASSERT_EQ(h2t_cpu_features(), f);

    ASSERT_EQ(unsetenv("H2T_CPU_MAX"), 0);
    h2t_cpu_reset();
    ASSERT_EQ(h2t_cpu_features(), f);
    h2t_kern_describe(disp, sizeof disp);
    ASSERT_EQ(strstr(disp, "depthwise3x3 avx+fma") != NULL,
              h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_FMA) && !h2t_cpu_has(H2T_CPU_AVX512F));
    ASSERT_EQ(strstr(disp, "depthwise3x3 avx512") != NULL,
              h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_FMA | H2T_CPU_AVX512F));
    ASSERT_EQ(h2t_kern_isa() == H2T_ISA_AVX512,
              h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_FMA | H2T_CPU_AVX512F));
    ASSERT_EQ(strstr(disp, "pooling avx") != NULL, h2t_cpu_has(H2T_CPU_AVX));
    h2t_kern_describe(tiny, sizeof tiny);
    ASSERT_STREQ(tiny, "depth");
}

/* OpenBLAS's thread count has one owner: common/blas.c sets and reads it, and no other source
 * file calls openblas_set_num_threads. */
TEST(common_blas_threads_one_owner)
{
    int before = h2t_blas_threads_get();
    ASSERT_GE(before, 1);
    h2t_blas_threads(2);
    ASSERT_EQ(h2t_blas_threads_get(), 2);
    h2t_blas_threads(0); /* leaves it */
    ASSERT_EQ(h2t_blas_threads_get(), 2);
    h2t_blas_threads(1);
    ASSERT_EQ(h2t_blas_threads_get(), 1);
    h2t_blas_threads(before);

    /* the description bench/extract prints: the build, the core chosen at load, the env */
    char d[512], want[160], tiny[8];
    const char *env = getenv("OPENBLAS_CORETYPE");
    snprintf(want, sizeof want, "; core %s; OPENBLAS_CORETYPE=%s", openblas_get_corename(),
             env ? env : "(unset)");
    h2t_blas_describe(d, sizeof d);
    ASSERT(strncmp(d, openblas_get_config(), strlen(openblas_get_config())) == 0);
    ASSERT(strstr(d, want) != NULL);
    h2t_blas_describe(tiny, sizeof tiny); /* truncated, still a string */
    ASSERT_EQ(strlen(tiny), sizeof tiny - 1);

    char cmd[8192], cwd[4096];
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(cmd, sizeof(cmd),
             "cd %s && grep -rln --include='*.c' --include='*.h' 'openblas_set_num_threads *(' "
             "common extract solver server client cli storage proto bench tests 2>/dev/null | "
             "grep -v '^common/blas.c$' >%s/others.txt; true",
             test_src_path(""), cwd);
    ASSERT_EQ(system(cmd), 0);
    FILE *f = fopen("others.txt", "r");
    ASSERT(f != NULL);
    char line[512] = "";
    int found = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (found)
        TEST_FAILF("openblas_set_num_threads outside common/blas.c: %s", line);
}

/* The repository is self-contained: no file but docs/history.md points at documents outside
 * it (the design, method and style notes it grew from are written into docs/). */
TEST(common_no_references_outside_the_repository)
{
    char cmd[8192], cwd[4096];
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    /* the pattern is written so that it does not match this file */
    snprintf(cmd, sizeof(cmd),
             "cd %s && grep -rnE '(\\.\\./|/work/)shared[/]|(DESIGN|HEAD2TOE|STYLE)[.]md' "
             "--exclude-dir=build --exclude-dir=.git --exclude-dir=models --exclude-dir=demo "
             "--exclude-dir=node_modules --exclude-dir=eval-out --exclude=history.md . "
             ">%s/refs.txt; true",
             test_src_path(""), cwd);
    ASSERT_EQ(system(cmd), 0);
    FILE *f = fopen("refs.txt", "r");
    ASSERT(f != NULL);
    char line[1024] = "";
    int found = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (found)
        TEST_FAILF("a reference outside the repository: %s", line);
}

TEST(common_file_read)
{
    uint8_t *buf = (uint8_t *)"untouched";
    size_t len = 7;
    ASSERT_EQ(h2t_file_read("missing.onnx", "model file", 100, &buf, &len), H2T_ENOTFOUND);
    ASSERT(strstr(h2t_err_detail(), "model file missing.onnx"));
    ASSERT_EQ(mkdir("dir", 0700), 0);
    ASSERT_EQ(h2t_file_read("dir", "model file", 100, &buf, &len), H2T_EIO);
    FILE *f = fopen("ten", "wb");
    ASSERT(f);
    ASSERT_EQ(fwrite("0123456789", 1, 10, f), 10);
    fclose(f);
    ASSERT_EQ(h2t_file_read("ten", "model file", 9, &buf, &len), H2T_ETOOBIG);
    ASSERT(strstr(h2t_err_detail(), "10 bytes (at most 9)"));
    ASSERT_EQ(len, 7); /* nothing written on failure */
    ASSERT_OK(h2t_file_read("ten", "model file", 10, &buf, &len));
    ASSERT_EQ(len, 10);
    ASSERT(!memcmp(buf, "0123456789", 10));
    free(buf);
    f = fopen("empty", "wb");
    ASSERT(f);
    fclose(f);
    ASSERT_OK(h2t_file_read("empty", "model file", 10, &buf, &len));
    ASSERT_EQ(len, 0);
    free(buf);
}
