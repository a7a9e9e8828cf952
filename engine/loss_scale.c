#include "engine/loss_scale.h"

#include <math.h>

void kelp_loss_scaler_init(kelp_loss_scaler *s)
{
    *s = (kelp_loss_scaler){.scale = 65536.0f, .growth_factor = 2.0f, .backoff_factor = 0.5f,
                            .growth_interval = 2000};
}

float kelp_loss_scaler_inverse(const kelp_loss_scaler *s) { return (float)(1.0 / (double)s->scale); }

void kelp_loss_scaler_update(kelp_loss_scaler *s, bool finite)
{
    if (!finite) {
        s->scale *= s->backoff_factor;
        s->clean_steps = 0;
        s->skipped_steps++;
        return;
    }
    if (++s->clean_steps == s->growth_interval) {
        const float grown = s->scale * s->growth_factor;
        if (isfinite(grown)) /* GradScaler keeps the scale where growing would overflow it */
            s->scale = grown;
        s->clean_steps = 0;
    }
}
