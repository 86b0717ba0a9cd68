/*
 * extract/par.c - the kernels' parallel for (onnx_par_for): a range split in chunks over
 * threads started for the call.
 */
#include <pthread.h>

#include "extract/onnx_graph.h"

typedef struct par_job {
    onnx_par_fn fn;
    void *ctx;
    int64_t lo, hi;
} par_job;

static void *par_main(void *arg)
{
    par_job *j = arg;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

/* Threads are started per call: a kernel runs for milliseconds, a thread start costs tens of
 * microseconds, and there is no pool to own or shut down. */
void onnx_par_for(int threads, int64_t n, int64_t min_chunk, onnx_par_fn fn, void *ctx)
{
    if (threads > 8)
        threads = 8;
    if (min_chunk < 1)
        min_chunk = 1;
    if (threads > 1 && n / min_chunk < threads)
        threads = (int)(n / min_chunk);
    if (threads <= 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_t tid[8];
    par_job job[8];
    int started[8] = {0};
    for (int t = 0; t < threads; t++) {
        job[t].fn = fn;
        job[t].ctx = ctx;
        job[t].lo = n * t / threads;
        job[t].hi = n * (t + 1) / threads;
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, par_main, &job[t]) == 0;
    fn(ctx, job[0].lo, job[0].hi);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            fn(ctx, job[t].lo, job[t].hi);
    }
}
