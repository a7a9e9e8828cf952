/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

int kelp_cpu_softmax_xent_forward(int threads, const kelp_xent_desc *d, const float *logits, const int32_t *labels,
                                  const float *class_weights, float *loss, float *probs, float *norm)
{
    (void)threads;
    (void)d;
    (void)logits;
    (void)labels;
    (void)class_weights;
    (void)loss;
    (void)probs;
    (void)norm;
    return 0;
}

void kelp_cpu_softmax_xent_backward(int threads, const kelp_xent_desc *d, const float *probs,
                                    const int32_t *labels, const float *class_weights, const float *norm,
                                    float dloss, float *dlogits)
{
    (void)threads;
    (void)d;
    (void)probs;
    (void)labels;
    (void)class_weights;
    (void)norm;
    (void)dloss;
    (void)dlogits;
}

