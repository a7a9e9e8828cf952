/* kelp info: version, devices, libraries, layer types, zoo. */
#include <cblas.h>
#include <stdio.h>

#include "engine/backend.h"
#include "tools/cli.h"
#ifdef KELP_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

/* The ops a backend runs, by the storage type of their activations; a layer whose op is missing is refused,
 * never run on the CPU behind the user's back. */
static void print_ops(kelp_backend *be)
{
    static const kelp_dtype types[] = {KELP_F32, KELP_BF16, KELP_F16};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int count = 0;
        printf("            %-5s", kelp_dtype_name(types[t]));
        for (int op = 0; op < KELP_OP_COUNT; op++)
            if (be->iface->supports(be, (kelp_op)op, types[t])) {
                printf(" %s", kelp_op_name((kelp_op)op));
                count++;
            }
        printf("%s\n", count == KELP_OP_COUNT ? " (all)" : count ? "" : " none");
    }
}

#ifdef KELP_HAVE_CUDA
static void print_cuda_ops(void)
{
    kelp_ctx_options o = kelp_ctx_defaults();
    o.device = "cuda:0";
    kelp_ctx *ctx;
    if (kelp_ctx_create(&o, &ctx) != KELP_OK) {
        printf("            cuda:0 cannot be used: %s\n", kelp_last_error());
        return;
    }
    print_ops(kelp_ctx_backend(ctx));
    kelp_ctx_destroy(ctx);
}
#endif

static void print_cuda(void)
{
#ifdef KELP_HAVE_CUDA
    kelp_cuda_version_info v;
    kelp_cuda_versions(&v);
    int count = kelp_cuda_device_count();
    char nccl[32] = "not found";
    if (v.nccl)
        snprintf(nccl, sizeof nccl, "%d", v.nccl);
    printf("cuda:       compiled in (runtime %d, driver %d, cuDNN %d, cuBLAS %d, NCCL %s); %d device%s\n", v.runtime,
           v.driver, v.cudnn, v.cublas, nccl, count, count == 1 ? "" : "s");
    for (int i = 0; i < count; i++) {
        char name[256];
        kelp_cuda_device_name(i, name, sizeof name);
        printf("  cuda:%d     %s\n", i, name);
    }
    if (count > 0)
        print_cuda_ops();
    else
        puts("            no device visible: --device cuda is refused");
#else
    puts("cuda:       not compiled in (configure with nvcc present, or -DKELP_CUDA=ON)");
#endif
}

int cmd_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    kelp_ctx *ctx;
    kelp_status s = kelp_ctx_create(NULL, &ctx);
    if (s != KELP_OK)
        return cli_fail(s, "context");
    printf("kelp:       %s\n", KELP_VERSION_STRING);
    printf("cpu:        %d threads (OpenMP), BLAS: %s\n", kelp_ctx_threads(ctx), openblas_get_config());
    print_ops(kelp_ctx_backend(ctx));
    print_cuda();
    printf("layers:    ");
    for (int i = 0; i < kelp_layer_type_count(); i++)
        printf(" %s", kelp_layer_type_name(i));
    printf("\nzoo:       ");
    for (const char *const *z = kelp_model_zoo_names(); *z; z++)
        printf(" %s", *z);
    printf("\n");
    kelp_ctx_destroy(ctx);
    return 0;
}
