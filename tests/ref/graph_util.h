/* Helpers for tests that build graphs. */
#ifndef KELP_TEST_GRAPH_UTIL_H
#define KELP_TEST_GRAPH_UTIL_H

#include "kelp/kelp.h"
#include "test_util.h"

/* A CPU context with 2 threads and seed 1, created once per test process. */
kelp_ctx *test_ctx(void);
/* Reads tests/fixtures/<name> (fails the test when missing); free with free(). */
char *test_read_fixture(const char *name);
/* Builds a graph and fails the test with the library's message on error. */
kelp_graph *test_build(const char *json, int batch, bool training, bool with_loss, bool input_grads);
/* Fills input 0 with U(-1,1) and labels (when present) with classes in [0, classes). */
void test_fill_graph_inputs(kelp_graph *g, int classes, uint64_t seed);

#endif
