#include "ref_conv.h"

#include <stdlib.h>
#include <string.h>

void ref_conv2d_forward(const kelp_conv_desc *d, const float *x, const float *w, const float *bias, double *y)
{
    const int cg = d->c / d->groups, kg = d->k / d->groups;
    for (int n = 0; n < d->n; n++)
        for (int oh = 0; oh < d->oh; oh++)
            for (int ow = 0; ow < d->ow; ow++)
                for (int k = 0; k < d->k; k++) {
                    const int g = k / kg;
                    double sum = bias ? bias[k] : 0.0;
                    for (int r = 0; r < d->r; r++)
                        for (int s = 0; s < d->s; s++)
                            for (int ci = 0; ci < cg; ci++) {
                                int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                                int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w)
                                    continue;
                                double xv = x[(((int64_t)n * d->h + ih) * d->w + iw) * d->c + g * cg + ci];
                                double wv = w[(((int64_t)k * d->r + r) * d->s + s) * cg + ci];
                                sum += xv * wv;
                            }
                    y[(((int64_t)n * d->oh + oh) * d->ow + ow) * d->k + k] = sum;
                }
}

void ref_conv_transpose2d_forward(const kelp_conv_desc *d, const float *x, const float *w, const float *bias,
                                  double *y)
{
    const int cg = d->c / d->groups, kg = d->k / d->groups;
    const int64_t pixels = (int64_t)d->n * d->oh * d->ow;
    for (int64_t p = 0; p < pixels; p++)
        for (int k = 0; k < d->k; k++)
            y[p * d->k + k] = bias ? bias[k] : 0.0;
    for (int n = 0; n < d->n; n++)
        for (int ih = 0; ih < d->h; ih++)
            for (int iw = 0; iw < d->w; iw++)
                for (int c = 0; c < d->c; c++) {
                    const int g = c / cg;
                    double xv = x[(((int64_t)n * d->h + ih) * d->w + iw) * d->c + c];
                    for (int r = 0; r < d->r; r++)
                        for (int s = 0; s < d->s; s++) {
                            int oh = ih * d->stride_h - d->pad_h + r * d->dil_h;
                            int ow = iw * d->stride_w - d->pad_w + s * d->dil_w;
                            if (oh < 0 || oh >= d->oh || ow < 0 || ow >= d->ow)
                                continue;
                            double *yp = y + (((int64_t)n * d->oh + oh) * d->ow + ow) * d->k + g * kg;
                            const float *wp = w + (((int64_t)c * d->r + r) * d->s + s) * kg;
                            for (int k = 0; k < kg; k++)
                                yp[k] += xv * wp[k];
                        }
                }
}

void ref_linear_forward(int64_t rows, int in, int out, const float *x, const float *w, const float *bias, double *y)
{
    for (int64_t i = 0; i < rows; i++)
        for (int o = 0; o < out; o++) {
            double sum = bias ? bias[o] : 0.0;
            for (int j = 0; j < in; j++)
                sum += (double)x[i * in + j] * w[(int64_t)o * in + j];
            y[i * out + o] = sum;
        }
}

static void assert_doubled(const float *once, const float *twice, int64_t n, const char *layer, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (twice[i] != 2.0f * once[i])
            fail_msg("%s: %s[%lld] is %.9g after two backward passes, want exactly 2 * %.9g", layer, what,
                     (long long)i, twice[i], once[i]);
}

static float *copy_of(const kelp_tensor *t)
{
    size_t bytes = (size_t)kelp_shape_numel(&t->shape) * sizeof(float);
    float *copy = malloc(bytes);
    assert_non_null(copy);
    memcpy(copy, t->data, bytes);
    return copy;
}

void ref_assert_backward_accumulates(test_layer *t)
{
    test_layer_forward(t);
    test_layer_backward(t);
    float *dx = copy_of(&t->din[0]);
    float *dparam[KELP_MAX_PARAMS] = {0};
    for (int p = 0; p < t->n_params; p++)
        if (t->dparam[p].data)
            dparam[p] = copy_of(&t->dparam[p]);
    TEST_OK(t->type->backward(&t->io));
    assert_doubled(dx, test_f32(&t->din[0]), kelp_shape_numel(&t->din[0].shape), t->type->name, "input 0");
    for (int p = 0; p < t->n_params; p++)
        if (dparam[p])
            assert_doubled(dparam[p], test_f32(&t->dparam[p]), kelp_shape_numel(&t->dparam[p].shape), t->type->name,
                           t->spec[p].suffix);
    free(dx);
    for (int p = 0; p < t->n_params; p++)
        free(dparam[p]);
}

void ref_set_batch(test_layer *t, int64_t batch)
{
    for (int i = 0; i < t->n_in; i++) {
        t->in[i].shape.dims[0] = batch;
        t->din[i].shape.dims[0] = batch;
    }
    t->out.shape.dims[0] = batch;
    t->dout.shape.dims[0] = batch;
}

void ref_assert_fields_listed(const kelp_layer_type *type, const char *json_text)
{
    cJSON *json = cJSON_Parse(json_text);
    assert_non_null(json);
    for (const cJSON *item = json->child; item; item = item->next) {
        bool listed = false;
        for (const char *const *f = type->fields; *f; f++)
            listed = listed || strcmp(*f, item->string) == 0;
        if (!listed)
            fail_msg("%s reads field '%s' but does not list it", type->name, item->string);
    }
    cJSON_Delete(json);
}
