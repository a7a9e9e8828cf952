/* A loader batch into a graph's image input, wherever the graph computes.
 *
 * On the CPU the loader's threads normalize each batch while the previous step runs, and the floats are copied in.
 * On a device the host ships the pixels only (a quarter of the bytes) and the device normalizes them
 * (prepare_images), its copy overlapping the step before; the loader then skips the floats (pixels_only). */
#ifndef KELP_ENGINE_FEED_H
#define KELP_ENGINE_FEED_H

#include <stdbool.h>

#include "engine/backend.h"
#include "io/loader.h"

/* Whether a loader feeding this backend should make pixels only (kelp_loader_config.pixels_only). */
bool kelp_feed_pixels_only(const kelp_backend *be);

/* b's images into x, whose batch dimension is already b->n (kelp_graph_set_batch), normalized with the loader's
 * mean and std. */
kelp_status kelp_feed_images(const kelp_loader *loader, const kelp_batch *b, kelp_tensor *x);

#endif
