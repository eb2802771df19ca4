/* One-sample inference of a fitted stacked ensemble (cosim.detection.native).
 *
 * The model is a "program" of two flat arrays built in Python: `ix` (int64: sizes, kinds and
 * offsets) and `dv` (double: thresholds, leaf values, weights). Layout, all offsets into ix or dv:
 *
 *   ix[0] d, ix[1] mean (dv), ix[2] scale (dv), ix[3] n_base, ix[4] meta compares float32,
 *   ix[5 + e] start of estimator e's descriptor (e = 0..n_base-1: base, n_base: meta).
 *
 *   descriptor: kind, n_in, n_out, then per kind
 *     TREE  0: feature, left, right (ix), threshold, value (dv), n_classes
 *     BOOST 1: n_trees, k, roots, feature, left, right, column (ix), threshold, value, init (dv), rate (dv)
 *     BAYES 2: k, theta, var, const (dv)
 *     MLP   3: n_layers, activation, softmax out, widest hidden layer, then per layer: n_in, n_out,
 *              weights (n_in x n_out, row-major), bias (dv)
 *
 * Trees compare the float32-rounded input, as scikit-learn's do; a leaf has left == -1.
 * Sums run in the order the numpy form (cosim.detection.fast) computes them where that order is
 * plain; where numpy's order is its own (pairwise sums, BLAS products, exp) results agree to
 * within a few units in the last place.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { TREE = 0, BOOST = 1, BAYES = 2, MLP = 3 };
enum { RELU = 0, TANH = 1, LOGISTIC = 2, IDENTITY = 3 };

static double expit(double a) { return 1.0 / (1.0 + exp(-a)); }

static void softmax(double *a, int64_t n) {
    double m = a[0], s = 0.0;
    for (int64_t i = 1; i < n; i++) if (a[i] > m) m = a[i];
    for (int64_t i = 0; i < n; i++) { a[i] = exp(a[i] - m); s += a[i]; }
    for (int64_t i = 0; i < n; i++) a[i] /= s;
}

static int64_t leaf(const int64_t *feature, const int64_t *left, const int64_t *right, const double *threshold,
                    int64_t node, const double *x32) {
    while (left[node] != -1)
        node = x32[feature[node]] <= threshold[node] ? left[node] : right[node];
    return node;
}

/* probabilities of estimator `e` for input x (x32: x rounded to float32) into out[n_out];
 * work: scratch of at least max(k, 2 * widest hidden layer) doubles. Returns n_out. */
static int64_t estimator(const int64_t *ix, const double *dv, const int64_t *e, const double *x, const double *x32,
                         double *out, double *work) {
    int64_t kind = e[0], n_out = e[2];
    const int64_t *p = e + 3;
    if (kind == TREE) {
        const int64_t *feature = ix + p[0], *left = ix + p[1], *right = ix + p[2];
        const double *threshold = dv + p[3], *value = dv + p[4];
        int64_t k = p[5];
        const double *v = value + k * leaf(feature, left, right, threshold, 0, x32);
        double s = 0.0;
        for (int64_t c = 0; c < k; c++) s += v[c];
        for (int64_t c = 0; c < k; c++) out[c] = v[c] / s;
        return n_out;
    }
    if (kind == BOOST) {
        int64_t n_trees = p[0], k = p[1];
        const int64_t *roots = ix + p[2], *feature = ix + p[3], *left = ix + p[4], *right = ix + p[5],
                      *column = ix + p[6];
        const double *threshold = dv + p[7], *value = dv + p[8], *init = dv + p[9];
        double rate = dv[p[10]];
        double *acc = work;
        for (int64_t c = 0; c < k; c++) acc[c] = 0.0;
        for (int64_t t = 0; t < n_trees; t++)
            acc[column[t]] += value[leaf(feature, left, right, threshold, roots[t], x32)];
        if (k == 1) {
            double q = expit(init[0] + rate * acc[0]);
            out[0] = 1.0 - q;
            out[1] = q;
            return 2;
        }
        for (int64_t c = 0; c < k; c++) out[c] = init[c] + rate * acc[c];
        softmax(out, k);
        return n_out;
    }
    if (kind == BAYES) {
        int64_t k = p[0], n = e[1];
        const double *theta = dv + p[1], *var = dv + p[2], *cst = dv + p[3];
        for (int64_t c = 0; c < k; c++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                double r = x[j] - theta[c * n + j];
                s += r * r / var[c * n + j];
            }
            out[c] = cst[c] - 0.5 * s;
        }
        softmax(out, k);
        return n_out;
    }
    /* MLP */
    int64_t n_layers = p[0], activation = p[1], soft = p[2], widest = p[3];
    const int64_t *layer = p + 4;
    const double *a = x;
    double *buf[2] = {work, work + widest};
    int64_t width = 0;
    for (int64_t l = 0; l < n_layers; l++, layer += 4) {
        int64_t n_in = layer[0], n_o = layer[1];
        const double *w = dv + layer[2], *b = dv + layer[3];
        double *z = l == n_layers - 1 ? out : buf[l % 2];
        for (int64_t j = 0; j < n_o; j++) z[j] = 0.0;
        for (int64_t i = 0; i < n_in; i++) {
            double ai = a[i];
            const double *wi = w + i * n_o;
            for (int64_t j = 0; j < n_o; j++) z[j] += ai * wi[j];
        }
        for (int64_t j = 0; j < n_o; j++) z[j] += b[j];
        if (l < n_layers - 1) {
            for (int64_t j = 0; j < n_o; j++) {
                double v = z[j];
                z[j] = activation == RELU ? (v > 0.0 ? v : 0.0)
                     : activation == TANH ? tanh(v)
                     : activation == LOGISTIC ? expit(v) : v;
            }
        }
        a = z;
        width = n_o;
    }
    if (soft) {
        softmax(out, width);
        return width;
    }
    double q = expit(out[0]);
    out[0] = 1.0 - q;
    out[1] = q;
    return 2;
}

/* Class probabilities of the raw sample x[d] into out; work: scratch (see stack_work_size).
 * Returns the number of classes. */
int64_t stack_proba(const int64_t *ix, const double *dv, const double *x, double *out, double *work) {
    int64_t d = ix[0], n_base = ix[3], meta_f32 = ix[4];
    const double *mean = dv + ix[1], *scale = dv + ix[2];
    double *xs = work, *xs32 = work + d, *z = work + 2 * d;
    for (int64_t j = 0; j < d; j++) {
        xs[j] = (x[j] - mean[j]) / scale[j];
        xs32[j] = (double)(float)xs[j];
    }
    int64_t nz = 0;
    for (int64_t b = 0; b < n_base; b++) {
        const int64_t *e = ix + ix[5 + b];
        double *p = z + nz;
        double *scratch = z + nz + e[2] + 2;
        int64_t n = estimator(ix, dv, e, xs, xs32, p, scratch);
        if (n == 2) {  /* binary: only P(positive) goes up, as in the numpy form */
            p[0] = p[1];
            nz += 1;
        } else {
            nz += n;
        }
    }
    const int64_t *meta = ix + ix[5 + n_base];
    double *z32 = z + nz, *scratch = z32 + nz;
    if (meta_f32)
        for (int64_t j = 0; j < nz; j++) z32[j] = (double)(float)z[j];
    return estimator(ix, dv, meta, z, meta_f32 ? z32 : z, out, scratch);
}
