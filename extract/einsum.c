/*
 * extract/einsum.c - Einsum equations as batched matrix products (nn.h).
 *
 * Two operands: every label is batch (in A, B and the output), M (A and output), N (B and
 * output) or K (A and B, summed). Each operand is used in place when its axes already read
 * [batch][M][K] or [batch][K][M] (A; the second as a transposed product), [batch][K][N] or
 * [batch][N][K] (B), and the output is written in place when it reads [batch][M][N] or
 * [batch][N][M]; otherwise the operand is first permuted into scratch, or the product goes to
 * scratch and is permuted out. A batch label of size 1 in one operand is broadcasting: it is
 * dropped there and becomes an M or N label. One operand: the labels missing from the output
 * are summed and the rest permuted. Repeated labels in one operand (diagonals) and labels summed
 * within one of two operands are refused, naming the equation.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "extract/nn.h"

#define ELL_BASE 128 /* label ids of the ellipsis dims: ELL_BASE + position from the right */
#define MAXL (ELL_BASE + H2T_NN_EIN_MAXR + 1)

typedef struct term {
    int n; /* labels (ellipsis expanded) */
    int id[H2T_NN_EIN_MAXR];
    int ell; /* ellipsis present */
} term;

static int bad(const char *eq, const char *why)
{
    return h2t_err_set(H2T_EUNSUPPORTED, "Einsum equation '%s': %s", eq, why);
}

static int corrupt(const char *eq, const char *why)
{
    return h2t_err_set(H2T_ECORRUPT, "Einsum equation '%s': %s", eq, why);
}

/* Parse one term of [s, e) (spaces ignored); rank < 0: ellipsis dims unknown (check time). */
static int parse_term(const char *eq, const char *s, const char *e, int rank, term *t)
{
    int lab[H2T_NN_EIN_MAXR + 1], nl = 0, ell_at = -1;
    for (const char *c = s; c < e; c++) {
        if (*c == ' ')
            continue;
        if (*c == '.') {
            if (e - c < 3 || c[1] != '.' || c[2] != '.' || ell_at >= 0)
                return corrupt(eq, "bad ellipsis");
            ell_at = nl;
            c += 2;
            continue;
        }
        if (!isalpha((unsigned char)*c))
            return corrupt(eq, "labels must be letters");
        if (nl == H2T_NN_EIN_MAXR)
            return bad(eq, "too many labels");
        lab[nl++] = *c;
    }
    t->ell = ell_at >= 0;
    int ne = 0;
    if (rank >= 0) {
        ne = rank - nl;
        if (ne < 0 || (!t->ell && ne != 0))
            return h2t_err_set(H2T_ESHAPE, "Einsum equation '%s': %d labels for rank %d", eq, nl,
                               rank);
    }
    if (nl + ne > H2T_NN_EIN_MAXR)
        return bad(eq, "rank too large");
    t->n = 0;
    for (int i = 0; i <= nl; i++) {
        if (i == ell_at)
            for (int j = 0; j < ne; j++)
                t->id[t->n++] = ELL_BASE + (ne - 1 - j);
        if (i < nl)
            t->id[t->n++] = lab[i];
    }
    for (int i = 0; i < t->n; i++)
        for (int j = i + 1; j < t->n; j++)
            if (t->id[i] == t->id[j])
                return bad(eq, "a label repeated within one operand (diagonal) is not supported");
    return 0;
}

static int has(const term *t, int id)
{
    for (int i = 0; i < t->n; i++)
        if (t->id[i] == id)
            return i;
    return -1;
}

/* Split eq into operand terms and the output term (implicit output when no "->"). */
static int parse_eq(const char *eq, int n_in, const int *rank, term *in, term *out)
{
    const char *arrow = strstr(eq, "->");
    const char *end = arrow ? arrow : eq + strlen(eq);
    const char *s = eq;
    int k = 0;
    for (;;) {
        const char *c = memchr(s, ',', (size_t)(end - s));
        const char *e = c ? c : end;
        if (k == n_in)
            return corrupt(eq, "more terms than inputs");
        int rc = parse_term(eq, s, e, rank ? rank[k] : -1, &in[k]);
        if (rc < 0)
            return rc;
        k++;
        if (!c)
            break;
        s = c + 1;
    }
    if (k != n_in)
        return corrupt(eq, "fewer terms than inputs");
    if (n_in > 2)
        return bad(eq, "more than two operands");
    if (arrow) {
        int r = -1;
        if (rank) { /* the output's ellipsis spans the widest operand ellipsis */
            int ne = 0;
            for (int i = 0; i < n_in; i++)
                for (int j = 0; j < in[i].n; j++)
                    if (in[i].id[j] >= ELL_BASE && in[i].id[j] - ELL_BASE + 1 > ne)
                        ne = in[i].id[j] - ELL_BASE + 1;
            int nl = 0;
            for (const char *c = arrow + 2; *c; c++)
                nl += isalpha((unsigned char)*c) != 0;
            r = nl + (strstr(arrow + 2, "...") ? ne : 0);
        }
        int rc = parse_term(eq, arrow + 2, arrow + strlen(arrow), r, out);
        if (rc < 0)
            return rc;
        for (int i = 0; i < out->n; i++) {
            int found = 0;
            for (int j = 0; j < n_in; j++)
                found |= has(&in[j], out->id[i]) >= 0;
            if (!found && out->id[i] < ELL_BASE)
                return corrupt(eq, "an output label is in no operand");
        }
        return 0;
    }
    /* implicit: ellipsis dims, then the labels seen once, in alphabetical order */
    out->n = 0;
    out->ell = 0;
    for (int e = ELL_BASE + H2T_NN_EIN_MAXR; e >= ELL_BASE; e--)
        for (int j = 0; j < n_in; j++)
            if (has(&in[j], e) >= 0) {
                out->id[out->n++] = e;
                break;
            }
    for (int c = 'A'; c <= 'z'; c++) {
        int cnt = 0;
        for (int j = 0; j < n_in; j++)
            cnt += has(&in[j], c) >= 0;
        if (cnt == 1 && out->n < H2T_NN_EIN_MAXR)
            out->id[out->n++] = c;
    }
    return 0;
}

int h2t_nn_einsum_check(const char *eq, int n_in)
{
    term in[2], out;
    if (n_in < 1 || n_in > 2)
        return bad(eq, "only one or two operands are supported");
    int rc = parse_eq(eq, n_in, NULL, in, &out);
    if (rc < 0 || n_in == 1)
        return rc;
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < in[j].n; i++)
            if (has(&in[1 - j], in[j].id[i]) < 0 && has(&out, in[j].id[i]) < 0)
                return bad(eq, "a label summed within one operand is not supported");
    return 0;
}

/* Sequence of a term's ids restricted to those with cls[id] == c, in the term's order. */
static int seq(const term *t, const int *cls, int c, int *o)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        if (cls[t->id[i]] == c)
            o[n++] = t->id[i];
    return n;
}

/* Whether t's ids are exactly the concatenation x ++ y ++ z. */
static int is_cat(const term *t, const int *x, int nx, const int *y, int ny, const int *z, int nz)
{
    if (t->n != nx + ny + nz)
        return 0;
    for (int i = 0; i < nx; i++)
        if (t->id[i] != x[i])
            return 0;
    for (int i = 0; i < ny; i++)
        if (t->id[nx + i] != y[i])
            return 0;
    for (int i = 0; i < nz; i++)
        if (t->id[nx + ny + i] != z[i])
            return 0;
    return 1;
}

/* perm[i] = position in t of ids x ++ y ++ z [i]. */
static void perm_of(const term *t, const int *x, int nx, const int *y, int ny, const int *z, int nz,
                    int *perm)
{
    int k = 0;
    for (int i = 0; i < nx; i++)
        perm[k++] = has(t, x[i]);
    for (int i = 0; i < ny; i++)
        perm[k++] = has(t, y[i]);
    for (int i = 0; i < nz; i++)
        perm[k++] = has(t, z[i]);
}

enum { C_NONE, C_BATCH, C_M, C_N, C_K };

int h2t_nn_einsum_plan(const char *eq, int n_in, const int *rank, const int64_t *const *dims,
                       h2t_nn_einsum *p)
{
    term in[2], out;
    memset(p, 0, sizeof *p);
    p->n_in = n_in;
    int rc = h2t_nn_einsum_check(eq, n_in);
    if (rc == 0)
        rc = parse_eq(eq, n_in, rank, in, &out);
    if (rc < 0)
        return rc;
    int64_t size[MAXL];
    for (int i = 0; i < MAXL; i++)
        size[i] = -1;
    /* sizes per label; a size-1 label of one operand broadcasts against the other */
    int cls[MAXL] = {0};
    for (int j = 0; j < n_in; j++)
        for (int i = 0; i < in[j].n; i++) {
            int id = in[j].id[i];
            int64_t d = dims[j][i];
            if (size[id] < 0 || size[id] == 1)
                size[id] = d;
            else if (d != size[id] && d != 1)
                return h2t_err_set(H2T_ESHAPE,
                                   "Einsum equation '%s': label '%c' has sizes %lld and %lld", eq,
                                   id < ELL_BASE ? id : '.', (long long)size[id], (long long)d);
        }
    p->out_rank = out.n;
    p->keeps_axis0 = out.n > 0;
    for (int j = 0; j < n_in; j++)
        p->keeps_axis0 &= in[j].n > 0 && out.n > 0 && in[j].id[0] == out.id[0];
    for (int i = 0; i < out.n; i++)
        p->out_dim[i] = size[out.id[i]];
    if (n_in == 1) {
        /* sum the labels not in the output, then permute the kept ones into output order */
        int kept[H2T_NN_EIN_MAXR], nk = 0;
        for (int i = 0; i < in[0].n; i++) {
            p->red[i] = has(&out, in[0].id[i]) < 0;
            if (!p->red[i])
                kept[nk++] = in[0].id[i];
            p->a_dim[i] = dims[0][i];
        }
        p->a_rank = in[0].n;
        p->c_rank = nk;
        p->c_identity = 1;
        for (int i = 0; i < out.n; i++) {
            p->c_perm[i] = -1;
            for (int j = 0; j < nk; j++)
                if (kept[j] == out.id[i])
                    p->c_perm[i] = j;
            p->c_identity &= p->c_perm[i] == i;
            p->c_dim[i] = size[kept[i]];
        }
        return 0;
    }
    /* classes; a label of both operands with size 1 in one of them broadcasts: it is dropped
     * from that operand and becomes the other's M or N label */
    int drop[2][H2T_NN_EIN_MAXR] = {{0}};
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < in[j].n; i++) {
            int id = in[j].id[i], ia = has(&in[0], id), ib = has(&in[1], id);
            int o = has(&out, id) >= 0;
            if (ia < 0 || ib < 0) {
                cls[id] = ia >= 0 ? C_M : C_N;
                continue;
            }
            int64_t sa = dims[0][ia], sb = dims[1][ib];
            if (!o && sa != sb)
                return h2t_err_set(H2T_ESHAPE,
                                   "Einsum equation '%s': summed label of sizes %lld and %lld", eq,
                                   (long long)sa, (long long)sb);
            if (!o || sa == sb) {
                cls[id] = o ? C_BATCH : C_K;
            } else if (sa == 1) {
                cls[id] = C_N;
                drop[0][ia] = 1;
            } else {
                cls[id] = C_M;
                drop[1][ib] = 1;
            }
        }
    int bs[MAXL], ms[MAXL], ns_[MAXL], ks[MAXL];
    int nb = seq(&out, cls, C_BATCH, bs), nm = seq(&out, cls, C_M, ms);
    int nn = seq(&out, cls, C_N, ns_), nk = seq(&in[0], cls, C_K, ks);
    /* A and B without their dropped size-1 labels */
    term a = in[0], b = in[1];
    int64_t ad[H2T_NN_EIN_MAXR], bd[H2T_NN_EIN_MAXR];
    a.n = b.n = 0;
    for (int i = 0; i < in[0].n; i++)
        if (!drop[0][i])
            ad[a.n] = dims[0][i], a.id[a.n++] = in[0].id[i];
    for (int i = 0; i < in[1].n; i++)
        if (!drop[1][i])
            bd[b.n] = dims[1][i], b.id[b.n++] = in[1].id[i];
    p->nb = p->M = p->N = p->K = 1;
    for (int i = 0; i < nb; i++)
        p->nb *= size[bs[i]];
    for (int i = 0; i < nm; i++)
        p->M *= size[ms[i]];
    for (int i = 0; i < nn; i++)
        p->N *= size[ns_[i]];
    for (int i = 0; i < nk; i++)
        p->K *= size[ks[i]];
    /* A: [b][m][k] or [b][k][m] in place, else permuted to [b][m][k] */
    p->a_rank = a.n;
    memcpy(p->a_dim, ad, sizeof ad);
    if (is_cat(&a, bs, nb, ms, nm, ks, nk)) {
        p->a_mode = 0;
    } else if (is_cat(&a, bs, nb, ks, nk, ms, nm)) {
        p->a_mode = 1;
    } else {
        p->a_mode = 2;
        perm_of(&a, bs, nb, ms, nm, ks, nk, p->a_perm);
    }
    p->b_rank = b.n;
    memcpy(p->b_dim, bd, sizeof bd);
    if (is_cat(&b, bs, nb, ks, nk, ns_, nn)) {
        p->b_mode = 0;
    } else if (is_cat(&b, bs, nb, ns_, nn, ks, nk)) {
        p->b_mode = 1;
    } else {
        p->b_mode = 2;
        perm_of(&b, bs, nb, ks, nk, ns_, nn, p->b_perm);
    }
    /* output: [b][m][n] or [b][n][m] in place, else [b][m][n] in scratch permuted out */
    term c;
    c.n = 0;
    for (int i = 0; i < nb; i++)
        c.id[c.n++] = bs[i];
    for (int i = 0; i < nm; i++)
        c.id[c.n++] = ms[i];
    for (int i = 0; i < nn; i++)
        c.id[c.n++] = ns_[i];
    if (is_cat(&out, bs, nb, ms, nm, ns_, nn)) {
        p->c_mode = 0;
    } else if (is_cat(&out, bs, nb, ns_, nn, ms, nm)) {
        p->c_mode = 1;
    } else {
        p->c_mode = 2;
        p->c_rank = c.n;
        for (int i = 0; i < c.n; i++)
            p->c_dim[i] = size[c.id[i]];
        for (int i = 0; i < out.n; i++)
            p->c_perm[i] = has(&c, out.id[i]);
    }
    return 0;
}

size_t h2t_nn_einsum_scratch(const h2t_nn_einsum *p)
{
    if (p->n_in == 1)
        return p->c_identity ? 0 : (size_t)h2t_nn_numel(p->c_rank, p->c_dim);
    size_t s = 0;
    if (p->a_mode == 2)
        s += (size_t)(p->nb * p->M * p->K);
    if (p->b_mode == 2)
        s += (size_t)(p->nb * p->K * p->N);
    if (p->c_mode == 2)
        s += (size_t)(p->nb * p->M * p->N);
    return s;
}

int64_t h2t_nn_numel(int rank, const int64_t *dim)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dim[i];
    return n;
}

void h2t_nn_permute(const float *x, int rank, const int64_t *dim, const int *perm, float *y)
{
    int64_t st[H2T_NN_EIN_MAXR], od[H2T_NN_EIN_MAXR] = {0}, os[H2T_NN_EIN_MAXR] = {0}, s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= dim[i];
    }
    int64_t n = s;
    if (n == 0)
        return;
    if (rank == 0) {
        y[0] = x[0];
        return;
    }
    for (int i = 0; i < rank; i++) {
        od[i] = dim[perm[i]];
        os[i] = st[perm[i]];
    }
    int64_t idx[H2T_NN_EIN_MAXR] = {0}, inner = od[rank - 1], is = os[rank - 1];
    for (int64_t t = 0; t < n; t += inner) {
        int64_t off = 0;
        for (int i = 0; i < rank - 1; i++)
            off += idx[i] * os[i];
        for (int64_t j = 0; j < inner; j++)
            y[t + j] = x[off + j * is];
        for (int i = rank - 2; i >= 0; i--) {
            if (++idx[i] < od[i])
                break;
            idx[i] = 0;
        }
    }
}

void h2t_nn_einsum_run(int threads, const h2t_nn_einsum *p, const float *a, const float *b,
                       float *y, float *scratch)
{
    if (p->n_in == 1) {
        float *r = p->c_identity ? y : scratch;
        h2t_nn_reduce(threads, H2T_NN_RSUM, a, p->a_rank, p->a_dim, p->red, r);
        if (!p->c_identity)
            h2t_nn_permute(r, p->c_rank, p->c_dim, p->c_perm, y);
        return;
    }
    float *s = scratch;
    int ta = p->a_mode == 1, tb = p->b_mode == 1;
    if (p->a_mode == 2) {
        h2t_nn_permute(a, p->a_rank, p->a_dim, p->a_perm, s);
        a = s;
        s += p->nb * p->M * p->K;
    }
    if (p->b_mode == 2) {
        h2t_nn_permute(b, p->b_rank, p->b_dim, p->b_perm, s);
        b = s;
        s += p->nb * p->K * p->N;
    }
    float *c = p->c_mode == 2 ? s : y;
    int64_t lda = ta ? p->M : p->K, ldb = tb ? p->K : p->N;
    if (p->c_mode == 1) /* C^T = B^T A^T */
        h2t_nn_sgemm_batched(threads, p->nb, !tb, !ta, p->N, p->M, p->K, b, p->K * p->N, ldb, a,
                             p->M * p->K, lda, c, p->M * p->N, p->M);
    else
        h2t_nn_sgemm_batched(threads, p->nb, ta, tb, p->M, p->N, p->K, a, p->M * p->K, lda, b,
                             p->K * p->N, ldb, c, p->M * p->N, p->N);
    if (p->c_mode == 2)
        h2t_nn_permute(c, p->c_rank, p->c_dim, p->c_perm, y);
}
