/*
 * common/mpi.c - the MPI wrapper of common/mpi.h: OpenMPI (or any MPI-3 library) when built
 * with H2T_HAVE_MPI, a world of one otherwise.
 */
#include "common/mpi.h"
#include "common/err.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef H2T_HAVE_MPI
#include <mpi.h>
#endif

/* 0 never started, 1 active, 2 finalized (MPI forbids a second MPI_Init). */
static int g_state;
static int g_rank, g_size = 1;
/* stop messages (h2t_mpi_stop_post): posted by this rank, seen from other ranks */
static int g_stop_posted, g_stop_from = -1;
static unsigned char *g_stop_seen; /* g_size flags */

int h2t_mpi_built(void)
{
#ifdef H2T_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int h2t_mpi_active(void)
{
    return g_state == 1;
}
int h2t_mpi_rank(void)
{
    return g_state == 1 ? g_rank : 0;
}
int h2t_mpi_size(void)
{
    return g_state == 1 ? g_size : 1;
}

#ifdef H2T_HAVE_MPI

#define STOP_TAG 0x4832 /* on g_stop_comm only, so it never meets a caller's messages */
static MPI_Comm g_stop_comm = MPI_COMM_NULL;
static MPI_Request *g_stop_reqs;
static int32_t g_stop_word;

/* H2T_ENET with "rank R of N: what: MPI's text". */
static int mpi_fail(const char *what, int code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", code);
    return h2t_err_set(H2T_ENET, "rank %d of %d: %s: %s", g_rank, g_size, what, text);
}

int h2t_mpi_init(int *argc, char ***argv, int thread_level)
{
    if (g_state == 1)
        return 0;
    if (g_state == 2)
        return h2t_err_set(H2T_ESTATE, "MPI was finalized in this process; it cannot restart");
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited)
        return h2t_err_set(H2T_ESTATE, "MPI was started outside h2t_mpi_init");
    static const int levels[] = {MPI_THREAD_SINGLE, MPI_THREAD_FUNNELED, MPI_THREAD_SERIALIZED,
                                 MPI_THREAD_MULTIPLE};
    if (thread_level < H2T_MPI_THREAD_SINGLE || thread_level > H2T_MPI_THREAD_MULTIPLE)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_init: thread level %d", thread_level);
    int provided = MPI_THREAD_SINGLE;
    int code = MPI_Init_thread(argc, argv, levels[thread_level], &provided);
    if (code != MPI_SUCCESS)
        return mpi_fail("MPI_Init_thread", code);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (provided < levels[thread_level]) {
        int r = g_rank, n = g_size;
        MPI_Finalize();
        g_state = 2;
        g_rank = 0;
        g_size = 1;
        return h2t_err_set(H2T_ENET, "rank %d of %d: MPI grants thread level %d, %d asked", r, n,
                           provided, levels[thread_level]);
    }
    g_stop_seen = calloc((size_t)g_size, 1);
    g_stop_reqs = calloc((size_t)g_size, sizeof *g_stop_reqs);
    if (!g_stop_seen || !g_stop_reqs || MPI_Comm_dup(MPI_COMM_WORLD, &g_stop_comm) != MPI_SUCCESS) {
        int r = g_rank, n = g_size;
        free(g_stop_seen);
        free(g_stop_reqs);
        g_stop_seen = NULL;
        g_stop_reqs = NULL;
        MPI_Finalize();
        g_state = 2;
        g_rank = 0;
        g_size = 1;
        return h2t_err_set(H2T_ENOMEM, "rank %d of %d: MPI start: out of memory", r, n);
    }
    for (int r = 0; r < g_size; r++)
        g_stop_reqs[r] = MPI_REQUEST_NULL;
    g_state = 1;
    return 0;
}

/* Complete this rank's stop messages and receive the other ranks' (posted[r] from the
 * agreement), so that none is left in flight. */
static int stop_settle(const int32_t *posted)
{
    int rc = 0;
    if (g_state != 1)
        return 0;
    for (int r = 0; r < g_size; r++) {
        if (r == g_rank || !posted[r] || g_stop_seen[r])
            continue;
        int32_t w;
        int code = MPI_Recv(&w, 1, MPI_INT32_T, r, STOP_TAG, g_stop_comm, MPI_STATUS_IGNORE);
        if (code != MPI_SUCCESS && rc == 0)
            rc = mpi_fail("MPI_Recv (stop)", code);
    }
    if (g_stop_posted) {
        int code = MPI_Waitall(g_size, g_stop_reqs, MPI_STATUSES_IGNORE);
        if (code != MPI_SUCCESS && rc == 0)
            rc = mpi_fail("MPI_Waitall (stop)", code);
    }
    memset(g_stop_seen, 0, (size_t)g_size);
    g_stop_posted = 0;
    g_stop_from = -1;
    return rc;
}

int h2t_mpi_stop_post(void)
{
    if (g_state != 1 || g_stop_posted)
        return 0;
    g_stop_word = g_rank;
    for (int r = 0; r < g_size; r++) {
        if (r == g_rank)
            continue;
        int code =
            MPI_Isend(&g_stop_word, 1, MPI_INT32_T, r, STOP_TAG, g_stop_comm, &g_stop_reqs[r]);
        if (code != MPI_SUCCESS)
            return mpi_fail("MPI_Isend (stop)", code);
    }
    g_stop_posted = 1;
    return 0;
}

int h2t_mpi_stop_poll(int *from)
{
    if (g_state != 1)
        return 0;
    for (;;) {
        int flag = 0;
        MPI_Status stt;
        if (MPI_Iprobe(MPI_ANY_SOURCE, STOP_TAG, g_stop_comm, &flag, &stt) != MPI_SUCCESS || !flag)
            break;
        int32_t w;
        if (MPI_Recv(&w, 1, MPI_INT32_T, stt.MPI_SOURCE, STOP_TAG, g_stop_comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            break;
        g_stop_seen[stt.MPI_SOURCE] = 1;
        if (g_stop_from < 0)
            g_stop_from = stt.MPI_SOURCE;
    }
    if (g_stop_from >= 0 && from)
        *from = g_stop_from;
    return g_stop_from >= 0;
}

int h2t_mpi_finalize(void)
{
    if (g_state != 1)
        return 0;
    if (g_stop_posted)
        for (int r = 0; r < g_size; r++)
            if (g_stop_reqs[r] != MPI_REQUEST_NULL) {
                MPI_Cancel(&g_stop_reqs[r]);
                MPI_Request_free(&g_stop_reqs[r]);
            }
    MPI_Comm_free(&g_stop_comm);
    free(g_stop_seen);
    free(g_stop_reqs);
    g_stop_seen = NULL;
    g_stop_reqs = NULL;
    g_stop_posted = 0;
    int code = MPI_Finalize();
    int rc = code == MPI_SUCCESS ? 0 : mpi_fail("MPI_Finalize", code);
    g_state = 2;
    g_rank = 0;
    g_size = 1;
    return rc;
}

int h2t_mpi_barrier(void)
{
    if (g_state != 1)
        return 0;
    int code = MPI_Barrier(MPI_COMM_WORLD);
    return code == MPI_SUCCESS ? 0 : mpi_fail("MPI_Barrier", code);
}

int h2t_mpi_allreduce(void *buf, size_t count, h2t_mpi_type type, h2t_mpi_op op)
{
    if (count > 0 && !buf)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allreduce: NULL buffer of %zu elements", count);
    if (g_state != 1 || count == 0)
        return 0;
    MPI_Datatype dt;
    size_t esz;
    switch (type) {
    case H2T_MPI_F32:
        dt = MPI_FLOAT, esz = 4;
        break;
    case H2T_MPI_F64:
        dt = MPI_DOUBLE, esz = 8;
        break;
    case H2T_MPI_I32:
        dt = MPI_INT32_T, esz = 4;
        break;
    case H2T_MPI_I64:
        dt = MPI_INT64_T, esz = 8;
        break;
    case H2T_MPI_U64:
        dt = MPI_UINT64_T, esz = 8;
        break;
    default:
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allreduce: type %d", (int)type);
    }
    MPI_Op mop;
    switch (op) {
    case H2T_MPI_SUM:
        mop = MPI_SUM;
        break;
    case H2T_MPI_MIN:
        mop = MPI_MIN;
        break;
    case H2T_MPI_MAX:
        mop = MPI_MAX;
        break;
    default:
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allreduce: op %d", (int)op);
    }
    /* MPI counts are int: reduce in chunks of at most 2^30 elements */
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < count; off += chunk) {
        size_t n = count - off < chunk ? count - off : chunk;
        int code =
            MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esz, (int)n, dt, mop, MPI_COMM_WORLD);
        if (code != MPI_SUCCESS)
            return mpi_fail("MPI_Allreduce", code);
    }
    return 0;
}

int h2t_mpi_bcast(void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= h2t_mpi_size())
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_bcast: root %d of %d ranks", root, h2t_mpi_size());
    if (bytes > 0 && !buf)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_bcast: NULL buffer of %zu bytes", bytes);
    if (g_state != 1)
        return 0;
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t n = bytes - off < chunk ? bytes - off : chunk;
        int code = MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (code != MPI_SUCCESS)
            return mpi_fail("MPI_Bcast", code);
    }
    return 0;
}

int h2t_mpi_allgather(const void *send, void *recv, size_t bytes)
{
    if (bytes > INT_MAX)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allgather: %zu bytes per rank (at most %d)", bytes,
                           INT_MAX);
    if (bytes > 0 && (!send || !recv))
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allgather: NULL buffer");
    if (g_state != 1) {
        if (bytes > 0 && send != recv)
            memmove(recv, send, bytes);
        return 0;
    }
    int code =
        MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return code == MPI_SUCCESS ? 0 : mpi_fail("MPI_Allgather", code);
}

const char *h2t_mpi_library(char *buf, size_t len)
{
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (!buf || len == 0)
        return buf;
    if (MPI_Get_library_version(text, &n) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI (version unknown)");
    text[sizeof text - 1] = '\0';
    text[strcspn(text, "\n")] = '\0';
    snprintf(buf, len, "%s", text);
    return buf;
}

void h2t_mpi_abort(int code)
{
    if (g_state == 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* !H2T_HAVE_MPI */

int h2t_mpi_init(int *argc, char ***argv, int thread_level)
{
    (void)argc;
    (void)argv;
    (void)thread_level;
    return h2t_err_set(H2T_EUNSUPPORTED,
                       "built without MPI (install libopenmpi-dev, which provides mpicc, and "
                       "rebuild; docs/deployment.md)");
}
int h2t_mpi_finalize(void)
{
    return 0;
}
int h2t_mpi_barrier(void)
{
    return 0;
}
int h2t_mpi_allreduce(void *buf, size_t count, h2t_mpi_type type, h2t_mpi_op op)
{
    (void)type;
    (void)op;
    if (count > 0 && !buf)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allreduce: NULL buffer of %zu elements", count);
    return 0;
}
int h2t_mpi_bcast(void *buf, size_t bytes, int root)
{
    if (root != 0)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_bcast: root %d of 1 rank", root);
    if (bytes > 0 && !buf)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_bcast: NULL buffer of %zu bytes", bytes);
    return 0;
}
int h2t_mpi_allgather(const void *send, void *recv, size_t bytes)
{
    if (bytes > INT_MAX)
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allgather: %zu bytes per rank (at most %d)", bytes,
                           INT_MAX);
    if (bytes > 0 && (!send || !recv))
        return h2t_err_set(H2T_EINVAL, "h2t_mpi_allgather: NULL buffer");
    if (bytes > 0 && send != recv)
        memmove(recv, send, bytes);
    return 0;
}
int h2t_mpi_stop_post(void)
{
    return 0;
}
int h2t_mpi_stop_poll(int *from)
{
    (void)from;
    return 0;
}
static int stop_settle(const int32_t *posted)
{
    (void)posted;
    return 0;
}

const char *h2t_mpi_library(char *buf, size_t len)
{
    if (buf && len > 0)
        snprintf(buf, len, "none (built without MPI)");
    return buf;
}
void h2t_mpi_abort(int code)
{
    exit(code);
}

#endif

int h2t_mpi_agree(int rc, int *failed_rank)
{
    int size = h2t_mpi_size(), me = h2t_mpi_rank();
    /* every rank's (failed, posted a stop) */
    int32_t mine[2] = {rc < 0, g_stop_posted};
    int32_t *all = malloc((size_t)size * sizeof mine);
    int32_t *posted = malloc((size_t)size * sizeof *posted);
    if (!all || !posted) {
        free(all);
        free(posted);
        return h2t_err_set(H2T_ENOMEM, "rank %d of %d: agreement: out of memory", me, size);
    }
    char keep[512];
    snprintf(keep, sizeof keep, "%s", h2t_err_detail());
    int arc = h2t_mpi_allgather(mine, all, sizeof mine);
    int first = size;
    for (int r = 0; arc == 0 && r < size; r++) {
        posted[r] = all[2 * r + 1];
        if (all[2 * r] && first == size)
            first = r;
    }
    if (arc == 0)
        arc = stop_settle(posted);
    free(all);
    free(posted);
    if (arc < 0)
        return arc;
    if (first >= size)
        return 0;
    /* the failed rank's code and detail, so that every rank can name what failed */
    struct {
        int32_t rc;
        char detail[512];
    } msg;
    memset(&msg, 0, sizeof msg);
    if (me == first) {
        msg.rc = rc;
        snprintf(msg.detail, sizeof msg.detail, "%s", keep);
    }
    arc = h2t_mpi_bcast(&msg, sizeof msg, first);
    if (arc < 0)
        return arc;
    if (failed_rank)
        *failed_rank = first;
    msg.detail[sizeof msg.detail - 1] = '\0';
    if (me != first)
        h2t_err_set(msg.rc, "rank %d of %d failed: %s", first, size,
                    msg.detail[0] ? msg.detail : h2t_strerror(msg.rc));
    else
        h2t_err_set(msg.rc, "%s", keep);
    return msg.rc;
}
