/*
 * solver/knn.c - k-nearest-neighbour votes by cosine similarity (method knn, and its predict).
 * The CV, the final evaluation and h2t_result_predict all go through h2t_solver__knn, so a
 * stored knn head predicts exactly what its test accuracy counted.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "solver/internal.h"

/* 1 / ||row|| (0 for a zero row), double accumulation. */
static void inv_norms(const float *X, uint32_t n, uint32_t d, double *out)
{
    for (uint32_t i = 0; i < n; i++) {
        const float *x = X + (size_t)i * d;
        double s = 0;
        for (uint32_t c = 0; c < d; c++)
            s += (double)x[c] * x[c];
        out[i] = s > 0 ? 1.0 / sqrt(s) : 0;
    }
}

#define KNN_BLOCK 256u /* query rows per similarity block */

int h2t_solver__knn(const float *Q, uint32_t nq, const float *P, const uint32_t *py, uint32_t np,
                    uint32_t d, uint32_t K, const uint32_t *ks, uint32_t nks, uint32_t *pred,
                    float *share)
{
    uint32_t kmax = 0;
    for (uint32_t q = 0; q < nks; q++)
        kmax = ks[q] > kmax ? ks[q] : kmax;
    if (kmax > np)
        kmax = np;
    if (!nq || !nks)
        return 0;
    int rc = 0;
    double *qn = malloc((size_t)nq * sizeof(double)), *pn = malloc((size_t)np * sizeof(double) + 1);
    float *S = malloc((size_t)KNN_BLOCK * np * sizeof(float) + 1);
    double *top = malloc(((size_t)kmax + 1) * sizeof(double)); /* similarities, descending */
    uint32_t *ti = malloc(((size_t)kmax + 1) * sizeof(uint32_t));
    double *vs = malloc((size_t)K * sizeof(double));
    uint32_t *vc = malloc((size_t)K * sizeof(uint32_t));
    if (!qn || !pn || !S || !top || !ti || !vs || !vc) {
        rc = h2t_err_set(H2T_ENOMEM, "knn buffers (%u prototypes)", np);
        goto out;
    }
    inv_norms(Q, nq, d, qn);
    inv_norms(P, np, d, pn);
    for (uint32_t i0 = 0; i0 < nq; i0 += KNN_BLOCK) {
        uint32_t nb = nq - i0 < KNN_BLOCK ? nq - i0 : KNN_BLOCK;
        h2t_solver__sim(Q + (size_t)i0 * d, nb, P, np, d, S);
        for (uint32_t i = 0; i < nb; i++) {
            const float *s = S + (size_t)i * np;
            uint32_t nt = 0;
            /* the kmax most similar, by insertion: strictly larger similarity moves ahead, so
             * an equal one stays behind the lower index */
            for (uint32_t p = 0; p < np; p++) {
                double v = (double)s[p] * qn[i0 + i] * pn[p];
                if (nt == kmax && (!kmax || !(v > top[nt - 1])))
                    continue;
                uint32_t at = nt < kmax ? nt++ : nt - 1;
                while (at > 0 && v > top[at - 1]) {
                    top[at] = top[at - 1];
                    ti[at] = ti[at - 1];
                    at--;
                }
                top[at] = v;
                ti[at] = p;
            }
            for (uint32_t q = 0; q < nks; q++) {
                uint32_t k = ks[q] < nt ? ks[q] : nt;
                memset(vc, 0, (size_t)K * sizeof(uint32_t));
                for (uint32_t c = 0; c < K; c++)
                    vs[c] = 0;
                for (uint32_t m = 0; m < k; m++) {
                    vc[py[ti[m]]]++;
                    vs[py[ti[m]]] += top[m];
                }
                uint32_t best = 0;
                for (uint32_t c = 1; c < K; c++)
                    if (vc[c] > vc[best] || (vc[c] == vc[best] && vs[c] > vs[best]))
                        best = c;
                pred[(size_t)q * nq + i0 + i] = best;
                if (share && q == 0)
                    for (uint32_t c = 0; c < K; c++)
                        share[(size_t)(i0 + i) * K + c] = k ? (float)vc[c] / (float)k : 0;
            }
        }
    }
out:
    free(qn);
    free(pn);
    free(S);
    free(top);
    free(ti);
    free(vs);
    free(vc);
    return rc;
}
