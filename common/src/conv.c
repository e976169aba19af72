/*
 * Convolution and pooling kernels (maas/conv.h): convolution as im2col + one GEMM per batch
 * (maas/gemm.h), its gradients as two more GEMMs and col2im; pooling by direct loops.
 */
#include "maas/conv.h"

#include <string.h>

#include "maas/gemm.h"

static int out_size(int in, int k, int s, int same, int *pad_before) {
    if (same) {
        int out = (in + s - 1) / s;
        int pad = (out - 1) * s + k - in;
        *pad_before = pad > 0 ? pad / 2 : 0;
        return out;
    }
    *pad_before = 0;
    return in >= k ? (in - k) / s + 1 : 0;
}

maas_err maas_conv_geom_init(maas_conv_geom *g, char *errstr, size_t errstr_size) {
    const struct {
        const char *name;
        int v, max;
    } dims[] = {{"input height", g->h, MAAS_CONV_MAX_DIM},
                {"input width", g->w, MAAS_CONV_MAX_DIM},
                {"channels", g->c, MAAS_CONV_MAX_DIM},
                {"filters", g->f, MAAS_CONV_MAX_DIM},
                {"kernel height", g->kh, MAAS_CONV_MAX_WINDOW},
                {"kernel width", g->kw, MAAS_CONV_MAX_WINDOW},
                {"stride height", g->sh, MAAS_CONV_MAX_WINDOW},
                {"stride width", g->sw, MAAS_CONV_MAX_WINDOW}};
    for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
        if (dims[i].v < 1 || dims[i].v > dims[i].max)
            return maas_errf(errstr, errstr_size, MAAS_ERR_INVALID_ARGUMENT,
                             "%s: %d is not in 1..%d", dims[i].name, dims[i].v, dims[i].max);
    g->oh = out_size(g->h, g->kh, g->sh, g->same, &g->pt);
    g->ow = out_size(g->w, g->kw, g->sw, g->same, &g->pl);
    if (g->oh < 1 || g->ow < 1)
        return maas_errf(errstr, errstr_size, MAAS_ERR_SHAPE_MISMATCH,
                         "a %dx%d window with padding \"valid\" does not fit a %dx%d input", g->kh,
                         g->kw, g->h, g->w);
    return MAAS_OK;
}

size_t maas_conv_out_floats(const maas_conv_geom *g) {
    return (size_t)g->oh * (size_t)g->ow * (size_t)g->f;
}

size_t maas_conv_col_floats(const maas_conv_geom *g, size_t rows) {
    return rows * (size_t)g->oh * (size_t)g->ow * (size_t)g->kh * (size_t)g->kw * (size_t)g->c;
}

/* col (rows*oh*ow x kh*kw*c) = the windows of x, zeros where they cover padding. */
void maas_conv_im2col(const maas_conv_geom *g, const float *x, size_t rows, float *col) {
    size_t sample = (size_t)g->h * g->w * g->c, kc = (size_t)g->kw * g->c;
    float *o = col;
    for (size_t r = 0; r < rows; r++) {
        const float *xs = x + r * sample;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh + ky - g->pt;
                    if (iy < 0 || iy >= g->h) {
                        memset(o, 0, kc * sizeof(float));
                        o += kc;
                        continue;
                    }
                    /* a window row: kw cells of c channels, contiguous in x where inside (a
                     * plain loop: with few channels, a call per cell would cost more than the
                     * copy) */
                    const float *xr = xs + (size_t)iy * g->w * g->c;
                    int bx = ox * g->sw - g->pl;
                    if (bx >= 0 && bx + g->kw <= g->w) { /* the whole row inside: one run */
                        const float *src = xr + (size_t)bx * g->c;
                        for (size_t q = 0; q < kc; q++) o[q] = src[q];
                        o += kc;
                        continue;
                    }
                    for (int kx = 0; kx < g->kw; kx++, o += g->c) {
                        int ix = ox * g->sw + kx - g->pl;
                        if (ix < 0 || ix >= g->w) {
                            for (int ci = 0; ci < g->c; ci++) o[ci] = 0.0f;
                        } else {
                            const float *src = xr + (size_t)ix * g->c;
                            for (int ci = 0; ci < g->c; ci++) o[ci] = src[ci];
                        }
                    }
                }
    }
}

/* dx (zeroed here) += the windows of col laid back where they came from. */
static void col2im(const maas_conv_geom *g, const float *col, size_t rows, float *dx) {
    size_t sample = (size_t)g->h * g->w * g->c;
    memset(dx, 0, rows * sample * sizeof(float));
    const float *o = col;
    for (size_t r = 0; r < rows; r++) {
        float *ds = dx + r * sample;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh + ky - g->pt;
                    for (int kx = 0; kx < g->kw; kx++, o += g->c) {
                        int ix = ox * g->sw + kx - g->pl;
                        if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                        float *d = ds + ((size_t)iy * g->w + ix) * g->c;
                        for (int ci = 0; ci < g->c; ci++) d[ci] += o[ci];
                    }
                }
    }
}

void maas_conv_forward(const maas_conv_geom *g, const float *x, size_t rows, const float *kernel,
                       const float *bias, float *col, float *y) {
    int m = (int)(rows * (size_t)g->oh * (size_t)g->ow), k = g->kh * g->kw * g->c;
    maas_conv_im2col(g, x, rows, col);
    if (bias)
        for (int i = 0; i < m; i++)
            memcpy(y + (size_t)i * g->f, bias, (size_t)g->f * sizeof(float));
    maas_gemm(0, 0, m, g->f, k, 1.0f, col, k, kernel, g->f, bias ? 1.0f : 0.0f, y, g->f);
}

void maas_conv_backward(const maas_conv_geom *g, const float *x, size_t rows, const float *kernel,
                        const float *dy, float *col, float *dkernel, float *dbias, float *dx,
                        int accumulate) {
    int m = (int)(rows * (size_t)g->oh * (size_t)g->ow), k = g->kh * g->kw * g->c;
    maas_conv_im2col(g, x, rows, col);
    /* dK = col^T . dy ; db = column sums of dy ; dcol = dy . K^T, laid back into dx */
    maas_gemm(1, 0, k, g->f, m, 1.0f, col, k, dy, g->f, accumulate ? 1.0f : 0.0f, dkernel, g->f);
    if (dbias) {
        if (!accumulate) memset(dbias, 0, (size_t)g->f * sizeof(float));
        for (int i = 0; i < m; i++) {
            const float *d = dy + (size_t)i * g->f;
            for (int j = 0; j < g->f; j++) dbias[j] += d[j];
        }
    }
    if (!dx) return;
    maas_gemm(0, 1, m, k, g->f, 1.0f, dy, g->f, kernel, g->f, 0.0f, col, k);
    col2im(g, col, rows, dx);
}

/* The cells of output (oy, ox)'s window that are not padding: ky in [*y0, *y1), kx in
 * [*x0, *x1); never empty (geometry). */
static void window(const maas_conv_geom *g, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
    int by = oy * g->sh - g->pt, bx = ox * g->sw - g->pl;
    *y0 = by < 0 ? -by : 0;
    *y1 = by + g->kh > g->h ? g->h - by : g->kh;
    *x0 = bx < 0 ? -bx : 0;
    *x1 = bx + g->kw > g->w ? g->w - bx : g->kw;
}

/* Input index of window cell (ky, kx), channel ci, for output (oy, ox) (a cell inside). */
static size_t cell(const maas_conv_geom *g, int oy, int ox, int ky, int kx, int ci) {
    return ((size_t)(oy * g->sh + ky - g->pt) * g->w + (size_t)(ox * g->sw + kx - g->pl)) * g->c +
           (size_t)ci;
}

/* y = cell yi's channels where they are greater than y's (restrict: one vectorized pass). */
static void max_into(float *restrict y, const float *restrict xi, int c) {
    for (int ci = 0; ci < c; ci++) y[ci] = xi[ci] > y[ci] ? xi[ci] : y[ci];
}

/* Max pooling without the argmax (inference): the same values, each output's channels taken
 * as one run per cell. */
static void maxpool_values(const maas_conv_geom *g, const float *x, size_t rows, float *y) {
    size_t in = (size_t)g->h * g->w * g->c, out = maas_conv_out_floats(g);
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                float *yo = y + r * out + ((size_t)oy * g->ow + ox) * g->c;
                const float *xs = x + r * in;
                memcpy(yo, xs + cell(g, oy, ox, y0, x0, 0), (size_t)g->c * sizeof(float));
                for (int ky = y0; ky < y1; ky++)
                    for (int kx = ky == y0 ? x0 + 1 : x0; kx < x1; kx++)
                        max_into(yo, xs + cell(g, oy, ox, ky, kx, 0), g->c);
            }
}

void maas_maxpool_forward(const maas_conv_geom *g, const float *x, size_t rows, float *y,
                          int32_t *argmax) {
    if (!argmax) {
        maxpool_values(g, x, rows, y);
        return;
    }
    size_t in = (size_t)g->h * g->w * g->c, out = maas_conv_out_floats(g);
    for (size_t r = 0; r < rows; r++) {
        const float *xs = x + r * in;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                size_t o = r * out + ((size_t)oy * g->ow + ox) * g->c;
                float *yo = y + o;
                int32_t *ao = argmax + o;
                /* cells in row-major order, channels contiguous: a later cell wins only when
                 * strictly greater, so each channel keeps its first maximum */
                for (int ky = y0; ky < y1; ky++)
                    for (int kx = x0; kx < x1; kx++) {
                        size_t base = cell(g, oy, ox, ky, kx, 0);
                        const float *xi = xs + base;
                        if (ky == y0 && kx == x0) {
                            for (int ci = 0; ci < g->c; ci++) yo[ci] = xi[ci];
                            for (int ci = 0; ci < g->c; ci++) ao[ci] = (int32_t)(base + ci);
                        } else {
                            for (int ci = 0; ci < g->c; ci++)
                                if (xi[ci] > yo[ci]) {
                                    yo[ci] = xi[ci];
                                    ao[ci] = (int32_t)(base + (size_t)ci);
                                }
                        }
                    }
            }
    }
}

void maas_maxpool_backward(const maas_conv_geom *g, const float *dy, size_t rows,
                           const int32_t *argmax, float *dx) {
    size_t in = (size_t)g->h * g->w * g->c, out = maas_conv_out_floats(g);
    memset(dx, 0, rows * in * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++)
            dx[r * in + (size_t)argmax[r * out + o]] += dy[r * out + o];
}

void maas_avgpool_forward(const maas_conv_geom *g, const float *x, size_t rows, float *y) {
    size_t in = (size_t)g->h * g->w * g->c, out = maas_conv_out_floats(g);
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                float *yo = y + r * out + ((size_t)oy * g->ow + ox) * g->c;
                memset(yo, 0, (size_t)g->c * sizeof(float));
                for (int ky = y0; ky < y1; ky++)
                    for (int kx = x0; kx < x1; kx++) {
                        const float *xi = x + r * in + cell(g, oy, ox, ky, kx, 0);
                        for (int ci = 0; ci < g->c; ci++) yo[ci] += xi[ci];
                    }
                float inv = 1.0f / (float)((y1 - y0) * (x1 - x0)); /* padding not counted */
                for (int ci = 0; ci < g->c; ci++) yo[ci] *= inv;
            }
}

void maas_avgpool_backward(const maas_conv_geom *g, const float *dy, size_t rows, float *dx) {
    size_t in = (size_t)g->h * g->w * g->c, out = maas_conv_out_floats(g);
    memset(dx, 0, rows * in * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                const float *d = dy + r * out + ((size_t)oy * g->ow + ox) * g->c;
                float inv = 1.0f / (float)((y1 - y0) * (x1 - x0));
                for (int ky = y0; ky < y1; ky++)
                    for (int kx = x0; kx < x1; kx++) {
                        float *di = dx + r * in + cell(g, oy, ox, ky, kx, 0);
                        for (int ci = 0; ci < g->c; ci++) di[ci] += d[ci] * inv;
                    }
            }
}
