/*
 * common/cpu.c - the one CPU-feature probe (contract: common/cpu.h).
 */
#include "common/cpu.h"
#include "common/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#define CPU_X86 1
#endif

static const struct {
    unsigned bit;
    const char *name;
} cpu_names[] = {
    {H2T_CPU_SSE2, "sse2"}, {H2T_CPU_SSSE3, "ssse3"}, {H2T_CPU_SSE41, "sse4.1"},
    {H2T_CPU_SHA, "sha"},   {H2T_CPU_AVX, "avx"},     {H2T_CPU_F16C, "f16c"},
    {H2T_CPU_AVX2, "avx2"}, {H2T_CPU_FMA, "fma"},     {H2T_CPU_AVX512F, "avx512f"},
};

/* The levels of H2T_CPU_MAX: each allows its own features and every lower level's. */
static const struct {
    const char *name;
    unsigned allow;
} cpu_levels[] = {
    {"sse2", H2T_CPU_SSE2},
    {"sse4", H2T_CPU_SSE2 | H2T_CPU_SSSE3 | H2T_CPU_SSE41 | H2T_CPU_SHA},
    {"avx",
     H2T_CPU_SSE2 | H2T_CPU_SSSE3 | H2T_CPU_SSE41 | H2T_CPU_SHA | H2T_CPU_AVX | H2T_CPU_F16C},
    {"avx2", H2T_CPU_SSE2 | H2T_CPU_SSSE3 | H2T_CPU_SSE41 | H2T_CPU_SHA | H2T_CPU_AVX |
                 H2T_CPU_F16C | H2T_CPU_AVX2 | H2T_CPU_FMA},
    {"avx512", ~0u},
};

#ifdef CPU_X86
/* XCR0: which register states the OS saves on a context switch. Only valid when CPUID says
 * OSXSAVE (the OS enabled XSAVE and with it XGETBV). */
static uint64_t cpu_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

/* What the CPU and the OS support, before H2T_CPU_MAX. */
static unsigned cpu_probe(void)
{
    unsigned f = 0;
#ifdef CPU_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return H2T_CPU_SSE2; /* x86-64 always has SSE2 */
    f |= H2T_CPU_SSE2;
    if (c & bit_SSSE3)
        f |= H2T_CPU_SSSE3;
    if (c & bit_SSE4_1)
        f |= H2T_CPU_SSE41;
    unsigned c1 = c;
    /* YMM state (XCR0 bits 1 and 2: SSE and AVX) saved by the OS */
    int ymm = (c1 & bit_OSXSAVE) && (cpu_xcr0() & 0x6) == 0x6;
    /* and the AVX-512 state: opmask, upper ZMM0-15, ZMM16-31 (bits 5, 6, 7) */
    int zmm = ymm && (cpu_xcr0() & 0xe6) == 0xe6;
    if (ymm && (c1 & bit_AVX)) {
        f |= H2T_CPU_AVX;
        if (c1 & bit_F16C)
            f |= H2T_CPU_F16C;
        if (c1 & bit_FMA)
            f |= H2T_CPU_FMA;
    }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if ((b & bit_SHA) && (f & H2T_CPU_SSSE3) && (f & H2T_CPU_SSE41))
            f |= H2T_CPU_SHA;
        if ((f & H2T_CPU_AVX) && (b & bit_AVX2))
            f |= H2T_CPU_AVX2;
        if (zmm && (f & H2T_CPU_AVX) && (b & bit_AVX512F))
            f |= H2T_CPU_AVX512F;
    }
#endif
    return f;
}

/* The allowed set H2T_CPU_MAX names (~0u when unset or unknown). */
static unsigned cpu_limit(void)
{
    const char *v = getenv("H2T_CPU_MAX");
    if (!v || !*v)
        return ~0u;
    for (size_t i = 0; i < sizeof cpu_levels / sizeof cpu_levels[0]; i++)
        if (!strcmp(v, cpu_levels[i].name))
            return cpu_levels[i].allow;
    H2T_LOG_WARN("cpu", "H2T_CPU_MAX=%s is not one of sse2, sse4, avx, avx2, avx512: ignored", v);
    return ~0u;
}

/* 0 = not computed yet, else 1 << 31 | the features: a property of the machine and the
 * environment, computed the same by racing threads. */
static unsigned cpu_cache;
#define CPU_DONE (1u << 31)

unsigned h2t_cpu_features(void)
{
    unsigned v = __atomic_load_n(&cpu_cache, __ATOMIC_RELAXED);
    if (!v) {
        v = CPU_DONE | (cpu_probe() & cpu_limit());
        __atomic_store_n(&cpu_cache, v, __ATOMIC_RELAXED);
    }
    return v & ~CPU_DONE;
}

int h2t_cpu_has(unsigned mask)
{
    return (h2t_cpu_features() & mask) == mask;
}

void h2t_cpu_reset(void)
{
    __atomic_store_n(&cpu_cache, 0u, __ATOMIC_RELAXED);
}

char *h2t_cpu_describe(char *buf, size_t len)
{
    if (!len)
        return buf;
    unsigned f = h2t_cpu_features();
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++) {
        if (!(f & cpu_names[i].bit))
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? " " : "", cpu_names[i].name);
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
    return buf;
}
