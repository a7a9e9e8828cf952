/* Loader batches into a graph's input: floats on the CPU, pixels normalized on a device (engine/feed.h). */
#include "engine/feed.h"

#include <string.h>

#include "kelp/kelp.h"

bool kelp_feed_pixels_only(const kelp_backend *be) { return strcmp(be->iface->name, "cpu") != 0; }

kelp_status kelp_feed_images(const kelp_loader *loader, const kelp_batch *b, kelp_tensor *x)
{
    int64_t values = (int64_t)b->n * b->h * b->w * b->c;
    if (kelp_shape_numel(&x->shape) != values)
        return kelp_set_error(KELP_ERR_SHAPE, "feed: a batch of %d images of %dx%dx%d for an input of %lld values",
                              b->n, b->h, b->w, b->c, (long long)kelp_shape_numel(&x->shape));
    if (b->images)
        return kelp_tensor_upload_floats(x, b->images, values);
    const kelp_loader_config *cfg = kelp_loader_config_of(loader);
    if (b->c > KELP_PREP_MAX_CHANNELS)
        return kelp_set_error(KELP_ERR_SHAPE, "feed: %d channels; images are prepared with at most %d", b->c,
                              KELP_PREP_MAX_CHANNELS);
    kelp_prep_desc d = {.pixels = (int64_t)b->n * b->h * b->w, .c = b->c, .dtype = x->dtype};
    memcpy(d.mean, cfg->mean, sizeof(float) * (size_t)b->c);
    memcpy(d.std, cfg->std, sizeof(float) * (size_t)b->c);
    kelp_backend *be = x->backend;
    return be->iface->prepare_images(be, &d, b->pixels, x->data);
}
