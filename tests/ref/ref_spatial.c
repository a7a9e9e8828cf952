#include "ref_spatial.h"

#include <math.h>

void ref_batchnorm_train(int64_t rows, int c, const float *x, const float *gamma, const float *beta, double eps,
                         double *y, double *mean, double *var)
{
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0, ss = 0.0;
        for (int64_t r = 0; r < rows; r++)
            s += x[r * c + ch];
        double m = s / (double)rows;
        for (int64_t r = 0; r < rows; r++)
            ss += (x[r * c + ch] - m) * (x[r * c + ch] - m);
        double v = ss / (double)rows;
        for (int64_t r = 0; r < rows; r++)
            y[r * c + ch] = (x[r * c + ch] - m) / sqrt(v + eps) * gamma[ch] + beta[ch];
        mean[ch] = m;
        var[ch] = v;
    }
}

void ref_batchnorm_eval(int64_t rows, int c, const float *x, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, double eps, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int ch = 0; ch < c; ch++)
            y[r * c + ch] =
                (x[r * c + ch] - (double)running_mean[ch]) / sqrt(running_var[ch] + eps) * gamma[ch] + beta[ch];
}

/* Textbook form: dxhat = dy * gamma; dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / std. */
void ref_batchnorm_backward(int64_t rows, int c, const float *x, const float *dy, const float *gamma, double eps,
                            double *dx, double *dgamma, double *dbeta)
{
    for (int ch = 0; ch < c; ch++) {
        double m = 0.0, v = 0.0;
        for (int64_t r = 0; r < rows; r++)
            m += x[r * c + ch];
        m /= (double)rows;
        for (int64_t r = 0; r < rows; r++)
            v += (x[r * c + ch] - m) * (x[r * c + ch] - m);
        double sd = sqrt(v / (double)rows + eps);
        double mean_dxhat = 0.0, mean_dxhat_xhat = 0.0, dg = 0.0, db = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            double xhat = (x[r * c + ch] - m) / sd, g = dy[r * c + ch];
            mean_dxhat += g * gamma[ch];
            mean_dxhat_xhat += g * gamma[ch] * xhat;
            dg += g * xhat;
            db += g;
        }
        mean_dxhat /= (double)rows;
        mean_dxhat_xhat /= (double)rows;
        for (int64_t r = 0; r < rows; r++) {
            double xhat = (x[r * c + ch] - m) / sd;
            dx[r * c + ch] = (dy[r * c + ch] * gamma[ch] - mean_dxhat - xhat * mean_dxhat_xhat) / sd;
        }
        dgamma[ch] = dg;
        dbeta[ch] = db;
    }
}

int ref_pool_out_size(int in, int kernel, int stride, int pad, bool ceil_mode)
{
    double span = (double)(in + 2 * pad - kernel) / stride;
    int out = (int)(ceil_mode ? ceil(span) : floor(span)) + 1;
    /* the last window must start inside the input or its left padding */
    if (ceil_mode && (out - 1) * stride >= in + pad)
        out--;
    return out;
}

/* Index of an output element; the reference walks every position of the full (padded) window. */
static int64_t at(int64_t n, int64_t i, int64_t j, int64_t ch, int64_t h, int64_t w, int64_t c)
{
    return ((n * h + i) * w + j) * c + ch;
}

static int inside(int v, int lo, int hi) { return v >= lo && v < hi; }

/* The window's value, its divisor, and (max) the flat input position of its first maximum. */
static double pool_window(const ref_pool *p, const float *x, int n, int oh, int ow, int ch, int64_t *argmax)
{
    double best = -INFINITY, sum = 0.0;
    int counted = 0, padded = 0;
    *argmax = -1;
    for (int i = 0; i < p->kh; i++)
        for (int j = 0; j < p->kw; j++) {
            int ih = oh * p->sh - p->ph + i, iw = ow * p->sw - p->pw + j;
            if (inside(ih, -p->ph, p->h + p->ph) && inside(iw, -p->pw, p->w + p->pw))
                padded++;
            if (!inside(ih, 0, p->h) || !inside(iw, 0, p->w))
                continue;
            double v = x[at(n, ih, iw, ch, p->h, p->w, p->c)];
            counted++;
            sum += v;
            if (*argmax < 0 || v > best || isnan(v)) {
                best = v;
                *argmax = at(n, ih, iw, ch, p->h, p->w, p->c);
            }
        }
    if (p->max)
        return best;
    return sum / (p->count_include_pad ? padded : counted);
}

static void pool_dims(const ref_pool *p, int *oh, int *ow)
{
    *oh = ref_pool_out_size(p->h, p->kh, p->sh, p->ph, p->ceil_mode);
    *ow = ref_pool_out_size(p->w, p->kw, p->sw, p->pw, p->ceil_mode);
}

void ref_pool_forward(const ref_pool *p, const float *x, double *y)
{
    int oh, ow;
    pool_dims(p, &oh, &ow);
    int64_t argmax;
    for (int n = 0; n < p->n; n++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int ch = 0; ch < p->c; ch++)
                    y[at(n, i, j, ch, oh, ow, p->c)] = pool_window(p, x, n, i, j, ch, &argmax);
}

static double window_divisor(const ref_pool *p, int oh, int ow)
{
    int counted = 0, padded = 0;
    for (int i = 0; i < p->kh; i++)
        for (int j = 0; j < p->kw; j++) {
            int ih = oh * p->sh - p->ph + i, iw = ow * p->sw - p->pw + j;
            padded += inside(ih, -p->ph, p->h + p->ph) && inside(iw, -p->pw, p->w + p->pw);
            counted += inside(ih, 0, p->h) && inside(iw, 0, p->w);
        }
    return p->count_include_pad ? padded : counted;
}

void ref_pool_backward(const ref_pool *p, const float *x, const float *dy, double *dx)
{
    int oh, ow;
    pool_dims(p, &oh, &ow);
    for (int64_t i = 0; i < (int64_t)p->n * p->h * p->w * p->c; i++)
        dx[i] = 0.0;
    for (int n = 0; n < p->n; n++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int ch = 0; ch < p->c; ch++) {
                    double g = dy[at(n, i, j, ch, oh, ow, p->c)];
                    int64_t argmax;
                    pool_window(p, x, n, i, j, ch, &argmax);
                    if (p->max) {
                        dx[argmax] += g;
                        continue;
                    }
                    double div = window_divisor(p, i, j);
                    for (int a = 0; a < p->kh; a++)
                        for (int b = 0; b < p->kw; b++) {
                            int ih = i * p->sh - p->ph + a, iw = j * p->sw - p->pw + b;
                            if (inside(ih, 0, p->h) && inside(iw, 0, p->w))
                                dx[at(n, ih, iw, ch, p->h, p->w, p->c)] += g / div;
                        }
                }
}

/* Float coordinate arithmetic as in PyTorch (aten/src/ATen/native/UpSample.h); values in double. */
static float coord_scale(bool has_scale, double scale_factor, int in, int out)
{
    return has_scale ? (float)(1.0 / scale_factor) : (float)in / (float)out;
}

/* Weight of input index i for output index o along one axis. Nearest: floor(o * scale) clamped, with PyTorch's
 * nearest_idx cases (equal sizes copy, doubled sizes take o / 2). Bilinear: the tent 1 - |src - i| around the
 * clamped source coordinate; equal sizes copy. */
static double axis_weight(const ref_upsample *u, bool height, int o, int i)
{
    int in = height ? u->h : u->w, out = height ? u->oh : u->ow;
    float scale = coord_scale(u->has_scale, height ? u->scale_h : u->scale_w, in, out);
    if (!u->bilinear) {
        int src = out == in ? o : out == 2 * in ? o / 2 : (int)floorf((float)o * scale);
        return (src > in - 1 ? in - 1 : src) == i;
    }
    if (in == out)
        return o == i;
    float src = scale * ((float)o + 0.5f) - 0.5f;
    double s = src < 0.0f ? 0.0 : (double)src;
    if (s > in - 1)
        s = in - 1;
    double wgt = 1.0 - fabs(s - i);
    return wgt > 0.0 ? wgt : 0.0;
}

void ref_upsample_forward(const ref_upsample *u, const float *x, double *y)
{
    for (int n = 0; n < u->n; n++)
        for (int oh = 0; oh < u->oh; oh++)
            for (int ow = 0; ow < u->ow; ow++)
                for (int ch = 0; ch < u->c; ch++) {
                    double sum = 0.0;
                    for (int ih = 0; ih < u->h; ih++) {
                        double wh = axis_weight(u, true, oh, ih);
                        for (int iw = 0; wh != 0.0 && iw < u->w; iw++)
                            sum += wh * axis_weight(u, false, ow, iw) * x[at(n, ih, iw, ch, u->h, u->w, u->c)];
                    }
                    y[at(n, oh, ow, ch, u->oh, u->ow, u->c)] = sum;
                }
}

void ref_upsample_backward(const ref_upsample *u, const float *dy, double *dx)
{
    for (int n = 0; n < u->n; n++)
        for (int ih = 0; ih < u->h; ih++)
            for (int iw = 0; iw < u->w; iw++)
                for (int ch = 0; ch < u->c; ch++) {
                    double sum = 0.0;
                    for (int oh = 0; oh < u->oh; oh++) {
                        double wh = axis_weight(u, true, oh, ih);
                        for (int ow = 0; wh != 0.0 && ow < u->ow; ow++)
                            sum += wh * axis_weight(u, false, ow, iw) * dy[at(n, oh, ow, ch, u->oh, u->ow, u->c)];
                    }
                    dx[at(n, ih, iw, ch, u->h, u->w, u->c)] = sum;
                }
}
