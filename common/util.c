#include "common/util.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t h2t_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double h2t_now_s(void)
{
    return (double)h2t_now_ns() * 1e-9;
}

double h2t_rng_gauss(uint64_t *s)
{
    double u = ((h2t_rng_next(s) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1]: log(u) finite */
    double v = (h2t_rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

uint64_t h2t_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

/* ---- CRC-32C ---- */
static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

#if defined(__x86_64__)
/* SSE4.2's crc32 instruction computes the same CRC-32C, 8 bytes a step (about 20x the table).
 * One chain of it waits out the instruction's latency (3 cycles) at every step; three chains
 * over three neighbouring blocks keep it busy every cycle, and are joined by linearity: over
 * GF(2) the register after A || B is shift_|B|(register after A) ^ (register of B from 0),
 * where shift_n runs n zero bytes through the register, a linear map of its 32 bits, applied
 * with four 256-entry tables (one per byte of the register). */
#define CRC_LONG 8192 /* bytes per chain and round: long buffers */
#define CRC_SHORT 256 /* and for what is left, down to 3 x CRC_SHORT */

__attribute__((target("sse4.2"))) static uint64_t crc32c_run(uint64_t c, const uint8_t *p,
                                                             size_t len)
{
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

static uint32_t crc_shift_long[4][256], crc_shift_short[4][256];
static int crc_shift_ready;

/* tab[k][b]: the register b << 8k after n zero bytes */
__attribute__((target("sse4.2"))) static void crc_shift_make(uint32_t tab[4][256], size_t n)
{
    static const uint8_t zeros[CRC_LONG];
    uint32_t basis[32];
    for (int i = 0; i < 32; i++)
        basis[i] = (uint32_t)crc32c_run(1u << i, zeros, n);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int i = 0; i < 8; i++)
                if (b >> i & 1)
                    v ^= basis[8 * k + i];
            tab[k][b] = v;
        }
}

static void crc_shift_init(void)
{
    crc_shift_make(crc_shift_long, CRC_LONG);
    crc_shift_make(crc_shift_short, CRC_SHORT);
    __atomic_store_n(&crc_shift_ready, 1, __ATOMIC_RELEASE);
}

static inline uint32_t crc_shift(uint32_t tab[4][256], uint32_t c)
{
    return tab[0][c & 0xff] ^ tab[1][c >> 8 & 0xff] ^ tab[2][c >> 16 & 0xff] ^ tab[3][c >> 24];
}

/* rounds of three chains of blk bytes each while 3 blk are left */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_3way(uint32_t crc, const uint8_t **pp, size_t *lenp, size_t blk, uint32_t tab[4][256])
{
    const uint8_t *p = *pp;
    size_t len = *lenp;
    for (; len >= 3 * blk; len -= 3 * blk, p += 3 * blk) {
        uint64_t c0 = crc, c1 = 0, c2 = 0;
        const uint8_t *q = p, *end = p + blk;
        for (; q < end; q += 8) {
            uint64_t v0, v1, v2;
            memcpy(&v0, q, 8);
            memcpy(&v1, q + blk, 8);
            memcpy(&v2, q + 2 * blk, 8);
            c0 = __builtin_ia32_crc32di(c0, v0);
            c1 = __builtin_ia32_crc32di(c1, v1);
            c2 = __builtin_ia32_crc32di(c2, v2);
        }
        crc = crc_shift(tab, (uint32_t)c0) ^ (uint32_t)c1;
        crc = crc_shift(tab, crc) ^ (uint32_t)c2;
    }
    *pp = p;
    *lenp = len;
    return crc;
}

static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    if (len >= 3 * CRC_SHORT) {
        if (!__atomic_load_n(&crc_shift_ready, __ATOMIC_ACQUIRE))
            crc_shift_init(); /* idempotent: racing threads compute the same tables */
        crc = crc32c_3way(crc, &p, &len, CRC_LONG, crc_shift_long);
        crc = crc32c_3way(crc, &p, &len, CRC_SHORT, crc_shift_short);
    }
    return (uint32_t)crc32c_run(crc, p, len);
}
#endif

uint32_t h2t_crc32c(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
#if defined(__x86_64__)
    static int hw_state = -1; /* racing threads store the same answer */
    int hw = __atomic_load_n(&hw_state, __ATOMIC_RELAXED);
    if (hw < 0) {
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("sse4.2") && !getenv("H2T_NO_CRC32_HW");
        __atomic_store_n(&hw_state, hw, __ATOMIC_RELAXED);
    }
    if (hw)
        return ~crc32c_hw(~crc, p, len);
#endif
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
        crc_init(); /* idempotent: racing threads compute the same table */
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void h2t_hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- half floats ---- */
uint16_t h2t_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) /* inf / nan */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1)))
        half++; /* may carry into the exponent: that is the correct rounding */
    return (uint16_t)half;
}

float h2t_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (man == 0) {
            x = sign;
        } else {
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- memory ---- */
void *h2t_aalloc(size_t n, size_t size)
{
    if (size && n > ((size_t)-1 - 64) / size)
        return NULL;
    size_t bytes = (n * size + 63) & ~(size_t)63;
    if (!bytes)
        bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void h2t_afree(void *p)
{
    free(p);
}

/* ---- addresses ---- */
int h2t_addr_split(const char *s, const char *what, char *host, size_t hostlen, long *port, int *v6)
{
    const char *port_s;
    *v6 = 0;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':' || (size_t)(e - s - 1) >= hostlen)
            return h2t_err_set(H2T_EINVAL, "%s '%s': want [V6]:PORT", what, s);
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = 0;
        port_s = e + 2;
        *v6 = 1;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            snprintf(host, hostlen, "127.0.0.1");
            port_s = s;
        } else {
            if ((size_t)(colon - s) >= hostlen)
                return h2t_err_set(H2T_EINVAL, "%s '%s' is too long", what, s);
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = 0;
            port_s = colon + 1;
        }
    }
    char *end;
    errno = 0;
    long p = strtol(port_s, &end, 10);
    if (!*port_s || *end || errno || p < 0 || p > 65535)
        return h2t_err_set(H2T_EINVAL, "%s '%s': bad port '%s'", what, s, port_s);
    if (!strcmp(host, "localhost"))
        snprintf(host, hostlen, "127.0.0.1");
    *port = p;
    return 0;
}

/* ---- progress ---- */
struct h2t_progress {
    const char *what, *unit;
    uint64_t total, done;
    double t0, last;
    int on;
};

h2t_progress *h2t_progress_create(const char *what, uint64_t total, const char *unit)
{
    h2t_progress *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->what = what;
    p->unit = unit;
    p->total = total;
    p->t0 = h2t_now_s();
    p->on = isatty(STDERR_FILENO);
    return p;
}

void h2t_progress_force(h2t_progress *p, int on)
{
    if (p)
        p->on = on;
}

static void draw(h2t_progress *p, double now, int final)
{
    double el = now - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    char bar[32];
    int width = 24;
    int fill = p->total ? (int)((double)width * (double)p->done / (double)p->total) : 0;
    if (fill > width)
        fill = width;
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    if (p->total) {
        double eta =
            rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate : 0;
        fprintf(stderr, "\r%s [%s] %llu/%llu %s  %.1f %s/s  %s %.0fs   ", p->what, bar,
                (unsigned long long)p->done, (unsigned long long)p->total, p->unit, rate, p->unit,
                final ? "took" : "ETA", final ? el : eta);
    } else {
        fprintf(stderr, "\r%s %llu %s  %.1f %s/s   ", p->what, (unsigned long long)p->done, p->unit,
                rate, p->unit);
    }
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

void h2t_progress_update(h2t_progress *p, uint64_t done)
{
    if (!p)
        return;
    p->done = done;
    if (!p->on)
        return;
    double now = h2t_now_s();
    if (now - p->last < 0.1)
        return;
    p->last = now;
    draw(p, now, 0);
}

void h2t_progress_finish(h2t_progress *p)
{
    if (p && p->on)
        draw(p, h2t_now_s(), 1);
}

void h2t_progress_destroy(h2t_progress *p)
{
    free(p);
}

int h2t_token_read(const char *path, uint8_t *tok, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return h2t_err_set(H2T_EIO, "token file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return h2t_err_set(H2T_EIO, "token file %s: %s", path, strerror(e));
    }
    if (sb.st_mode & 077) {
        close(fd);
        return h2t_err_set(H2T_EPERM,
                           "token file %s may be read by others (mode %04o): chmod 600 %s", path,
                           (unsigned)(sb.st_mode & 07777), path);
    }
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, tok + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return h2t_err_set(H2T_EIO, "token file %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    while (n > 0 &&
           (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' ' || tok[n - 1] == '\t'))
        n--;
    if (n > H2T_TOKEN_MAX || n >= cap)
        return h2t_err_set(H2T_EINVAL, "token file %s: token longer than %d bytes", path,
                           H2T_TOKEN_MAX);
    if (n < H2T_TOKEN_MIN)
        return h2t_err_set(H2T_EINVAL,
                           "token file %s: token of %zu bytes; at least %d are needed (e.g. "
                           "head -c 32 /dev/urandom | base64 > %s)",
                           path, n, H2T_TOKEN_MIN, path);
    *len = n;
    return 0;
}

int h2t_file_read(const char *path, const char *what, size_t max, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "%s %s: %s", what, path,
                           strerror(errno));
    struct stat sb;
    int rc = 0;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = h2t_err_set(H2T_EIO, "%s %s: not a regular file", what, path);
        goto out;
    }
    if ((uint64_t)sb.st_size > max) {
        rc = h2t_err_set(H2T_ETOOBIG, "%s %s: %lld bytes (at most %zu)", what, path,
                         (long long)sb.st_size, max);
        goto out;
    }
    size_t n = (size_t)sb.st_size;
    if (!(buf = malloc(n ? n : 1))) {
        rc = h2t_err_set(H2T_ENOMEM, "%s %s: %zu bytes", what, path, n);
        goto out;
    }
    if (fread(buf, 1, n, f) != n) {
        rc = h2t_err_set(H2T_EIO, "%s %s: short read", what, path);
        goto out;
    }
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    fclose(f);
    return rc;
}
