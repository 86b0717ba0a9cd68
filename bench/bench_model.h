/*
 * bench/bench_model.h - what the extraction benchmarks share (header-only: each bench/ program
 * is one file linked with build/libh2tdb.a).
 *
 *     char path[512], cpu[128];
 *     if (bench_model_path("vit_b_16", path, sizeof path) < 0)  // exports it if needed
 *         fprintf(stderr, "%s\n", h2t_err_detail());
 *     bench_cpu_model(cpu, sizeof cpu);
 *     printf("cpu: %s, load %.2f, model %s\n", cpu, bench_loadavg(), path);
 *
 * Model names: a path ending in ".onnx" is used as given; NAME is models/NAME.onnx when that
 * exists (deploy/fetch_model.sh: mobilenet_v2, resnet18, resnet50), else the zoo's
 * models/zoo/NAME.onnx for "ARCH-opsetK" or models/zoo/ARCH-opset17.onnx for a bare ARCH,
 * exported first by deploy/export_zoo.py when missing (idempotent; needs python3-torch).
 * ONNX Runtime, the peer, runs in a node child (bench/extract_ort.js, onnxruntime-node from
 * deploy/fetch_model.sh --ort): bench_ort_runs.
 */
#ifndef H2T_BENCH_BENCH_MODEL_H
#define H2T_BENCH_BENCH_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"

/* Resolves name to a model file (see above) in path. Errors: H2T_ENOTFOUND (no such model
 * and the zoo export failed or does not know the name: names it), H2T_EINVAL (too long). */
static inline int bench_model_path(const char *name, char *path, size_t n)
{
    char arch[256], cmd[1024];
    const char *dash = strstr(name, "-opset");
    size_t len = strlen(name);

    if (len > 5 && strcmp(name + len - 5, ".onnx") == 0) {
        if ((size_t)snprintf(path, n, "%s", name) >= n)
            return h2t_err_set(H2T_EINVAL, "model path %s too long", name);
        return access(path, R_OK) == 0 ? 0 : h2t_err_set(H2T_ENOTFOUND, "model %s", path);
    }
    if ((size_t)snprintf(path, n, "models/%s.onnx", name) >= n)
        return h2t_err_set(H2T_EINVAL, "model name %s too long", name);
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(arch, sizeof arch, "%.*s", dash ? (int)(dash - name) : (int)len, name);
    if (dash)
        snprintf(path, n, "models/zoo/%s.onnx", name);
    else
        snprintf(path, n, "models/zoo/%s-opset17.onnx", name);
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 deploy/export_zoo.py '%s' --opset %s >&2", arch,
             dash ? dash + 6 : "17");
    fprintf(stderr, "bench: %s missing: %s\n", path, cmd);
    if (system(cmd) != 0 || access(path, R_OK) != 0)
        return h2t_err_set(H2T_ENOTFOUND,
                           "model %s: neither models/%s.onnx nor %s (deploy/export_zoo.py)", name,
                           name, path);
    return 0;
}

/* The CPU's model name from /proc/cpuinfo ("?" when unknown) and the online CPU count. */
static inline void bench_cpu_model(char *buf, size_t n)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    snprintf(buf, n, "?");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 1 + strspn(colon + 1, " \t");
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, n, "%s, %ld CPUs online", colon, cpus);
            break;
        }
    }
    if (f)
        fclose(f);
}

/* The CPU's vector-ISA flags from /proc/cpuinfo that the peers' kernel dispatch looks at
 * (space-separated, in this order; "?" when unknown): what ONNX Runtime's MLAS, which picks its
 * kernels by CPUID when it loads and reports no choice, would see. */
static inline void bench_cpu_flags(char *buf, size_t n)
{
    static const char *want[] = {"avx",      "avx2",     "fma",         "f16c",        "avx512f",
                                 "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile"};
    char line[8192];
    FILE *f = fopen("/proc/cpuinfo", "r");
    size_t used = 0;

    snprintf(buf, n, "?");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            char pat[32];
            snprintf(pat, sizeof pat, " %s", want[i]);
            char *at = strstr(line, pat);
            size_t k = strlen(pat);
            if (at && (at[k] == ' ' || at[k] == '\n') && used < n)
                used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? " " : "", want[i]);
        }
        break;
    }
    if (f)
        fclose(f);
}

/* The 1-minute load average (-1 when unknown): a figure taken while other work ran says so. */
static inline double bench_loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf", &l) != 1)
        l = -1;
    if (f)
        fclose(f);
    return l;
}

/* runs timed ONNX Runtime runs of model (bench/extract_ort.js in a node child: batch, threads
 * intra-op threads, graph optimisation opt "all" or "disabled", warm-up until steady) and
 * appends their images/s to ips[*n...]; ver gets ORT's version, *warm the warm-up runs.
 * Errors: H2T_EIO (node or onnxruntime-node missing: deploy/fetch_model.sh --ort),
 * H2T_ECORRUPT (unexpected output). */
static inline int bench_ort_runs(const char *model, const char *opt, int batch, int runs,
                                 int threads, double *ips, int *n, char *ver, size_t ver_len,
                                 int *warm)
{
    char cmd[1024], line[8192];
    const char *npm = getenv("H2T_NPM_CACHE");
    FILE *p;
    char *s;
    int rc = 0;

    snprintf(cmd, sizeof cmd,
             "NODE_PATH='%s/node_modules' node bench/extract_ort.js '%s' %d %d %d %s",
             npm ? npm : "models/.npm", model, batch, runs, threads, opt);
    p = popen(cmd, "r");
    if (!p)
        return h2t_err_set(H2T_EIO, "cannot start: %s", cmd);
    if (!fgets(line, sizeof line, p))
        line[0] = 0;
    if (pclose(p) != 0 || !(s = strstr(line, "\"ips\":[")))
        return h2t_err_set(H2T_EIO, "%s failed (deploy/fetch_model.sh --ort installs it)", cmd);
    s += 7;
    for (int i = 0; i < runs; i++) {
        char *end;
        ips[(*n)++] = strtod(s, &end);
        if (end == s) {
            rc = h2t_err_set(H2T_ECORRUPT, "extract_ort.js printed: %s", line);
            break;
        }
        s = end + 1;
    }
    if ((s = strstr(line, "\"warmup\":")))
        *warm = atoi(s + 9);
    if ((s = strstr(line, "\"version\":\"")))
        snprintf(ver, ver_len, "%.*s", (int)strcspn(s + 11, "\""), s + 11);
    return rc;
}

#endif
