/* Softmax cross-entropy with PyTorch's F.cross_entropy(reduction='mean') semantics: class weights, label smoothing
 * and ignore_index, alone or together. */
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>

#include "kernels/ops/xent.h"

/* Below this many logits a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

typedef struct row_terms {
    double nll;    /* w[y] * -logp[y] */
    double smooth; /* sum_k w[k] * -logp[k] */
} row_terms;

/* Writes the row's softmax into p with a max-shifted (stable) log-sum-exp and returns its two loss terms. */
static row_terms softmax_row(const kelp_xent_desc *d, const float *x, const float *class_weights, int32_t label,
                             float *p)
{
    int k_count = d->classes;
    float max = x[0];
    for (int k = 1; k < k_count; k++)
        max = fmaxf(max, x[k]);
    float sum = 0.0f;
    for (int k = 0; k < k_count; k++) {
        p[k] = expf(x[k] - max);
        sum += p[k];
    }
    float lse = max + logf(sum), inv = 1.0f / sum;
    row_terms t = {0.0, 0.0};
    for (int k = 0; k < k_count; k++) {
        p[k] *= inv;
        t.smooth -= (double)kelp_xent_class_weight(class_weights, k) * (double)(x[k] - lse);
    }
    t.nll = -(double)kelp_xent_class_weight(class_weights, label) * (double)(x[label] - lse);
    return t;
}

/* When every row is ignored the loss is 0, not PyTorch's NaN (kelp_xent_loss). On an invalid label loss and norm
 * are left untouched. */
// logits (M,K), labels (M) -> loss (1), probs (M,K), norm (1)
int kelp_cpu_softmax_xent_forward(int threads, const kelp_xent_desc *d, const float *logits, const int32_t *labels,
                                  const float *class_weights, float *loss, float *probs, float *norm)
{
    int64_t rows = d->rows, k_count = d->classes;
    double nll = 0.0, smooth = 0.0, weight = 0.0;
    int invalid = 0;
#pragma omp parallel for num_threads(threads) if (rows * k_count >= PARALLEL_MIN) schedule(static) \
    reduction(+ : nll, smooth, weight) reduction(| : invalid)
    for (int64_t i = 0; i < rows; i++) {
        int32_t label = labels[i];
        if (kelp_xent_label_invalid(d, label)) {
            invalid = 1;
            continue;
        }
        if (!kelp_xent_label_counts(d, label))
            continue;
        row_terms t = softmax_row(d, logits + i * k_count, class_weights, label, probs + i * k_count);
        nll += t.nll;
        smooth += t.smooth;
        weight += kelp_xent_class_weight(class_weights, label);
    }
    if (invalid)
        return -1;
    *loss = kelp_xent_loss(d, nll, smooth, weight);
    *norm = (float)weight;
    return 0;
}

// probs (M,K), labels (M) -> dlogits (M,K) +=
void kelp_cpu_softmax_xent_backward(int threads, const kelp_xent_desc *d, const float *probs,
                                    const int32_t *labels, const float *class_weights, const float *norm,
                                    float dloss, float *dlogits)
{
    int64_t rows = d->rows, k_count = d->classes;
    float w_sum = kelp_xent_weight_sum(class_weights, d->classes);
    float scale = kelp_xent_grad_scale(dloss, *norm);
#pragma omp parallel for num_threads(threads) if (rows * k_count >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        int32_t label = labels[i];
        if (!kelp_xent_label_counts(d, label))
            continue;
        const float *p = probs + i * k_count;
        float *dx = dlogits + i * k_count;
        float w_label = kelp_xent_class_weight(class_weights, label);
        for (int k = 0; k < d->classes; k++)
            dx[k] += scale * kelp_xent_grad(d, p[k], k == label, w_label, kelp_xent_class_weight(class_weights, k),
                                            w_sum);
    }
}
