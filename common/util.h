/*
 * common/util.h - small utilities shared by every module: monotonic time, big-endian
 * key packing, deterministic random numbers, CRC-32C, SHA-256 (common/sha256.c), IEEE half
 * floats, aligned buffers, and a terminal progress bar.
 *
 *     uint64_t total = 3000;
 *     h2t_progress *p = h2t_progress_create("extract", total, "img");
 *     for (uint64_t done = 1; done <= total; done++)
 *         h2t_progress_update(p, done); // after each image; redraws at most 10 times a second
 *     h2t_progress_finish(p);
 *     h2t_progress_destroy(p);
 */
#ifndef H2T_COMMON_UTIL_H
#define H2T_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* ---- time ---- */
uint64_t h2t_now_ns(void);  /* CLOCK_MONOTONIC nanoseconds */
double h2t_now_s(void);     /* CLOCK_MONOTONIC seconds */
uint64_t h2t_wall_ms(void); /* CLOCK_REALTIME milliseconds since the epoch */

/* ---- big-endian packing (store keys, wire frames) ---- */
static inline void h2t_be16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void h2t_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void h2t_be64_put(uint8_t *p, uint64_t v)
{
    h2t_be32_put(p, (uint32_t)(v >> 32));
    h2t_be32_put(p + 4, (uint32_t)v);
}
static inline uint16_t h2t_be16_get(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t h2t_be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t h2t_be64_get(const uint8_t *p)
{
    return ((uint64_t)h2t_be32_get(p) << 32) | h2t_be32_get(p + 4);
}

/* ---- deterministic random numbers (splitmix64): seeds, shuffles, synthetic data ---- */
static inline uint64_t h2t_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform double in [0, 1). */
static inline double h2t_rng_unif(uint64_t *s)
{
    return (double)(h2t_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}
/* Standard normal (Box-Muller, one of the pair; two draws of the generator). */
double h2t_rng_gauss(uint64_t *s);

/* ---- checksums and hashes ---- */
/* CRC-32C (Castagnoli), software table; crc starts at 0 and chains across calls. */
uint32_t h2t_crc32c(uint32_t crc, const void *buf, size_t len);

typedef struct h2t_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} h2t_sha256;
/* Streaming SHA-256 (common/sha256.c). update and final run the fastest compression this CPU
 * has (h2t_sha256_isa_best); every ISA gives the same digest. Any alignment, any split. */
void h2t_sha256_init(h2t_sha256 *s);
void h2t_sha256_update(h2t_sha256 *s, const void *data, size_t len);
void h2t_sha256_final(h2t_sha256 *s, uint8_t out[32]);
/* Hash a whole file. Errors: H2T_EIO (detail names the file). */
int h2t_sha256_file(const char *path, uint8_t out[32]);
/* The compression functions, for tests and benchmarks: portable C, and the x86 SHA extensions
 * (chosen from CPUID at run time; the build's -march stays baseline). Asking for SHA-NI on a
 * CPU without it runs the C one. A state may mix ISAs between calls. */
enum { H2T_SHA256_ISA_C = 0, H2T_SHA256_ISA_SHANI = 1 };
int h2t_sha256_isa_best(void);
const char *h2t_sha256_isa_name(int isa); /* "c", "sha-ni" (static string) */
void h2t_sha256_update_isa(h2t_sha256 *s, const void *data, size_t len, int isa);
void h2t_sha256_final_isa(h2t_sha256 *s, uint8_t out[32], int isa);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void h2t_hex(const uint8_t *in, size_t n, char *out);

/* ---- IEEE 754 half precision (round to nearest even) ---- */
uint16_t h2t_f32_to_f16(float f);
float h2t_f16_to_f32(uint16_t h);

/* ---- memory ---- */
/* 64-byte aligned, zeroed allocation; NULL on failure or overflow. Free with h2t_afree. */
void *h2t_aalloc(size_t n, size_t size);
void h2t_afree(void *p);

/* ---- files ---- */
/* Read the whole regular file at path into *out (OWNED by the caller, free()), its size into
 * *len; what names the file in errors ("model file"). Errors: H2T_ENOTFOUND (no such file),
 * H2T_EIO (not a regular file, read error), H2T_ETOOBIG (over max bytes), H2T_ENOMEM. *out and
 * *len are written only on success. */
int h2t_file_read(const char *path, const char *what, size_t max, uint8_t **out, size_t *len);

/* ---- addresses ---- */
/* Split "HOST:PORT", "PORT" (host 127.0.0.1) or "[V6]:PORT" into host (hostlen bytes) and
 * port (0..65535); "localhost" becomes 127.0.0.1. what names the address in errors ("server
 * address", "listen address"). Errors: H2T_EINVAL naming the address and the bad part. */
int h2t_addr_split(const char *s, const char *what, char *host, size_t hostlen, long *port,
                   int *v6);

/* ---- shared-secret token files (server and client) ---- */
#define H2T_TOKEN_MIN 16  /* bytes: shorter tokens are refused */
#define H2T_TOKEN_MAX 255 /* bytes */
/* Read the token in path (trailing whitespace trimmed) into tok (cap > H2T_TOKEN_MAX bytes).
 * Like ssh with a private key, a file that its group or others may read or write is refused.
 * Errors: H2T_EIO (cannot open or read: the detail names the file), H2T_EPERM (mode allows
 * group/other access: the detail gives the mode and the chmod that fixes it), H2T_EINVAL
 * (shorter than H2T_TOKEN_MIN or longer than H2T_TOKEN_MAX bytes). */
int h2t_token_read(const char *path, uint8_t *tok, size_t cap, size_t *len);

/* ---- progress bar: draws on stderr only when stderr is a terminal ---- */
typedef struct h2t_progress h2t_progress;
/* what: label; total: units of work (0 = unknown); unit: "img", "step", ... (BORROWED
 * strings, must outlive the bar). NULL on allocation failure (then the other calls no-op). */
h2t_progress *h2t_progress_create(const char *what, uint64_t total, const char *unit);
void h2t_progress_update(h2t_progress *p, uint64_t done); /* redraws at most 10 times/s */
void h2t_progress_finish(h2t_progress *p);                /* final line + newline */
void h2t_progress_destroy(h2t_progress *p);
/* Force drawing on or off regardless of isatty (tests). */
void h2t_progress_force(h2t_progress *p, int on);

#endif
