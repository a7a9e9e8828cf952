#include "ref_elem.h"

#include <math.h>
#include <stdlib.h>

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

double ref_activation(kelp_act_kind kind, double alpha, double x)
{
    switch (kind) {
    case KELP_ACT_RELU: return x <= 0 ? 0.0 : x; /* NaN propagates */
    case KELP_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case KELP_ACT_SILU: return x * sigmoid(x);
    case KELP_ACT_SIGMOID: return sigmoid(x);
    case KELP_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case KELP_ACT_RELU6: return x < 0 ? 0.0 : x > 6 ? 6.0 : x;
    }
    return NAN;
}

double ref_activation_derivative(kelp_act_kind kind, double alpha, double x)
{
    switch (kind) {
    case KELP_ACT_RELU: return x <= 0 ? 0.0 : 1.0;
    case KELP_ACT_LEAKY_RELU: return x > 0 ? 1.0 : alpha;
    case KELP_ACT_SILU: return sigmoid(x) + x * sigmoid(x) * (1.0 - sigmoid(x));
    case KELP_ACT_SIGMOID: return sigmoid(x) * (1.0 - sigmoid(x));
    case KELP_ACT_GELU: return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
    case KELP_ACT_RELU6: return x <= 0 || x >= 6 ? 0.0 : 1.0;
    }
    return NAN;
}

static double class_weight(const float *weights, int c) { return weights ? weights[c] : 1.0; }

/* Each counted row i contributes sum_j a_j * -logp[i,j] with a_j = (1-eps) w[y] [j == y] + eps/K w[j]; its gradient
 * is sum_j a_j (p_c - [j == c]) = A p_c - a_c with A = sum_j a_j. */
double ref_softmax_xent(int64_t rows, int k, const float *logits, const int32_t *labels, const float *weights,
                        double label_smoothing, int ignore_index, double *dlogits)
{
    double *a = malloc((size_t)k * sizeof(double)), *logp = malloc((size_t)k * sizeof(double));
    double total = 0.0, norm = 0.0;
    for (int64_t i = 0; i < rows; i++)
        if (labels[i] != ignore_index)
            norm += class_weight(weights, labels[i]);
    for (int64_t i = 0; i < rows; i++) {
        const float *x = logits + i * k;
        double *dx = dlogits ? dlogits + i * k : NULL;
        if (dx)
            for (int c = 0; c < k; c++)
                dx[c] = 0.0;
        if (labels[i] == ignore_index)
            continue;
        double max = x[0], sum = 0.0;
        for (int c = 1; c < k; c++)
            max = fmax(max, x[c]);
        for (int c = 0; c < k; c++)
            sum += exp(x[c] - max);
        double a_sum = 0.0;
        for (int c = 0; c < k; c++) {
            logp[c] = x[c] - max - log(sum);
            a[c] = label_smoothing / k * class_weight(weights, c);
            if (c == labels[i])
                a[c] += (1.0 - label_smoothing) * class_weight(weights, c);
            total -= a[c] * logp[c];
            a_sum += a[c];
        }
        if (dx)
            for (int c = 0; c < k; c++)
                dx[c] = (a_sum * exp(logp[c]) - a[c]) / norm;
    }
    free(a);
    free(logp);
    return norm > 0 ? total / norm : 0.0;
}

int64_t ref_nchw_index(int h, int w, int channels, int b, int y, int x, int c)
{
    return (((int64_t)b * channels + c) * h + y) * w + x;
}
