#include "graph_util.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/text_file.h"

kelp_ctx *test_ctx(void)
{
    static kelp_ctx *ctx;
    if (!ctx) {
        kelp_ctx_options o = kelp_ctx_defaults();
        o.threads = 2;
        o.seed = 1;
        TEST_OK(kelp_ctx_create(&o, &ctx));
    }
    return ctx;
}

char *test_read_fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", KELP_SOURCE_DIR, name);
    char *text;
    TEST_OK(kelp_read_text_file(path, (size_t)64 << 20, &text));
    return text;
}

kelp_graph *test_build(const char *json, int batch, bool training, bool with_loss, bool input_grads)
{
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = batch;
    o.training = training;
    o.with_loss = with_loss;
    o.input_grads = input_grads;
    kelp_graph *g;
    TEST_OK(kelp_graph_build(test_ctx(), json, &o, &g));
    return g;
}

void test_fill_graph_inputs(kelp_graph *g, int classes, uint64_t seed)
{
    kelp_tensor *x = kelp_graph_input(g, 0);
    size_t n = (size_t)kelp_shape_numel(&x->shape);
    float *host = malloc(n * sizeof *host);
    test_fill_uniform(host, n, seed, -1.0f, 1.0f);
    TEST_OK(kelp_tensor_upload_floats(x, host, (int64_t)n)); /* rounded to the graph's precision */
    free(host);
    kelp_tensor *label = kelp_graph_label(g);
    if (label) {
        size_t m = (size_t)kelp_shape_numel(&label->shape);
        int32_t *l = malloc(m * sizeof *l);
        uint64_t s = seed + 1;
        for (size_t i = 0; i < m; i++)
            l[i] = test_rand_int(&s, 0, classes - 1);
        TEST_OK(kelp_tensor_upload(label, l, m * sizeof *l));
        free(l);
    }
}
