/*
 * common/sha256.c - SHA-256 (FIPS 180-4): a portable C compression function and one with the
 * x86 SHA extensions (SHA-NI), compiled with __attribute__((target("sha,sse4.1"))) whatever
 * the build's -march and chosen at run time from CPUID. Both compute the same function; the
 * update/final logic around them (buffering, padding) is shared.
 */
#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define H2T_SHA_X86 1
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/* ---- portable C ---- */

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* One round with the working variables renamed instead of shifted (a..h in place). */
#define RND(a, b, c, d, e, f, g, h, i)                                                             \
    do {                                                                                           \
        uint32_t t1_ =                                                                             \
            h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];        \
        uint32_t t2_ = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));      \
        d += t1_;                                                                                  \
        h = t1_ + t2_;                                                                             \
    } while (0)

static void blocks_c(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    for (; nblocks; nblocks--, p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = h2t_be32_get(p + 4 * i);
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6],
                 h = st[7];
        for (int i = 0; i < 64; i += 8) {
            RND(a, b, c, d, e, f, g, h, i);
            RND(h, a, b, c, d, e, f, g, i + 1);
            RND(g, h, a, b, c, d, e, f, i + 2);
            RND(f, g, h, a, b, c, d, e, i + 3);
            RND(e, f, g, h, a, b, c, d, i + 4);
            RND(d, e, f, g, h, a, b, c, i + 5);
            RND(c, d, e, f, g, h, a, b, i + 6);
            RND(b, c, d, e, f, g, h, a, i + 7);
        }
        st[0] += a;
        st[1] += b;
        st[2] += c;
        st[3] += d;
        st[4] += e;
        st[5] += f;
        st[6] += g;
        st[7] += h;
    }
}

/* ---- x86 SHA extensions ---- */

#ifdef H2T_SHA_X86
/* Four rounds (i = 0..15 of the 16 groups): mc holds W[4i..4i+3]; the schedule for group i+1
 * (mn) finishes here and msg1 starts the one for group i+3 (mp), the Intel SHA-NI order. */
#define QR(i, mc, mn, mp)                                                                          \
    do {                                                                                           \
        __m128i m_ = _mm_add_epi32(mc, _mm_loadu_si128((const __m128i *)&K[4 * (i)]));             \
        s1 = _mm_sha256rnds2_epu32(s1, s0, m_);                                                    \
        if ((i) >= 3 && (i) <= 14)                                                                 \
            mn = _mm_sha256msg2_epu32(_mm_add_epi32(mn, _mm_alignr_epi8(mc, mp, 4)), mc);          \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m_, 0x0e));                           \
        if ((i) >= 1 && (i) <= 12)                                                                 \
            mp = _mm_sha256msg1_epu32(mp, mc);                                                     \
    } while (0)

__attribute__((target("sha,sse4.1"))) static void blocks_shani(uint32_t st[8], const uint8_t *p,
                                                               size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
    __m128i t = _mm_loadu_si128((const __m128i *)&st[0]);  /* DCBA */
    __m128i s1 = _mm_loadu_si128((const __m128i *)&st[4]); /* HGFE */
    t = _mm_shuffle_epi32(t, 0xb1);                        /* CDAB */
    s1 = _mm_shuffle_epi32(s1, 0x1b);                      /* EFGH */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xf0);                     /* CDGH */
    for (; nblocks; nblocks--, p += 64) {
        __m128i abef = s0, cdgh = s1;
        __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
        __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
        QR(0, m0, m1, m3);
        QR(1, m1, m2, m0);
        QR(2, m2, m3, m1);
        QR(3, m3, m0, m2);
        QR(4, m0, m1, m3);
        QR(5, m1, m2, m0);
        QR(6, m2, m3, m1);
        QR(7, m3, m0, m2);
        QR(8, m0, m1, m3);
        QR(9, m1, m2, m0);
        QR(10, m2, m3, m1);
        QR(11, m3, m0, m2);
        QR(12, m0, m1, m3);
        QR(13, m1, m2, m0);
        QR(14, m2, m3, m1);
        QR(15, m3, m0, m2);
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
    }
    t = _mm_shuffle_epi32(s0, 0x1b);   /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xb1);  /* DCHG */
    s0 = _mm_blend_epi16(t, s1, 0xf0); /* DCBA */
    s1 = _mm_alignr_epi8(s1, t, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&st[0], s0);
    _mm_storeu_si128((__m128i *)&st[4], s1);
}
#endif

/* ---- dispatch ---- */

/* common/cpu.h caches the CPU's answer */
int h2t_sha256_isa_best(void)
{
#ifdef H2T_SHA_X86
    if (h2t_cpu_has(H2T_CPU_SHA | H2T_CPU_SSSE3 | H2T_CPU_SSE41))
        return H2T_SHA256_ISA_SHANI;
#endif
    return H2T_SHA256_ISA_C;
}

const char *h2t_sha256_isa_name(int isa)
{
    return isa == H2T_SHA256_ISA_SHANI ? "sha-ni" : "c";
}

static void blocks(int isa, uint32_t st[8], const uint8_t *p, size_t n)
{
#ifdef H2T_SHA_X86
    if (isa == H2T_SHA256_ISA_SHANI && h2t_sha256_isa_best() == H2T_SHA256_ISA_SHANI) {
        blocks_shani(st, p, n);
        return;
    }
#endif
    (void)isa;
    blocks_c(st, p, n);
}

/* ---- streaming interface ---- */

void h2t_sha256_init(h2t_sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof(h0));
    s->len = 0;
    s->nbuf = 0;
}

void h2t_sha256_update_isa(h2t_sha256 *s, const void *data, size_t len, int isa)
{
    const uint8_t *p = data;
    s->len += len;
    if (s->nbuf) {
        size_t take = 64 - s->nbuf < len ? 64 - s->nbuf : len;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        len -= take;
        if (s->nbuf < 64)
            return;
        blocks(isa, s->h, s->buf, 1);
        s->nbuf = 0;
    }
    /* whole blocks straight from the caller's bytes (any alignment) */
    if (len >= 64) {
        blocks(isa, s->h, p, len / 64);
        p += len & ~(size_t)63;
        len &= 63;
    }
    memcpy(s->buf, p, len);
    s->nbuf = len;
}

void h2t_sha256_update(h2t_sha256 *s, const void *data, size_t len)
{
    h2t_sha256_update_isa(s, data, len, h2t_sha256_isa_best());
}

void h2t_sha256_final_isa(h2t_sha256 *s, uint8_t out[32], int isa)
{
    uint64_t bits = s->len * 8;
    size_t n = s->nbuf;
    s->buf[n++] = 0x80;
    if (n > 56) {
        memset(s->buf + n, 0, 64 - n);
        blocks(isa, s->h, s->buf, 1);
        n = 0;
    }
    memset(s->buf + n, 0, 56 - n);
    h2t_be64_put(s->buf + 56, bits);
    blocks(isa, s->h, s->buf, 1);
    s->nbuf = 0;
    for (int i = 0; i < 8; i++)
        h2t_be32_put(out + 4 * i, s->h[i]);
}

void h2t_sha256_final(h2t_sha256 *s, uint8_t out[32])
{
    h2t_sha256_final_isa(s, out, h2t_sha256_isa_best());
}

int h2t_sha256_file(const char *path, uint8_t out[32])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return h2t_err_set(H2T_EIO, "open %s: %s", path, strerror(errno));
    h2t_sha256 s;
    h2t_sha256_init(&s);
    uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return h2t_err_set(H2T_EIO, "read %s: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        h2t_sha256_update(&s, buf, (size_t)n);
    }
    close(fd);
    h2t_sha256_final(&s, out);
    return 0;
}
