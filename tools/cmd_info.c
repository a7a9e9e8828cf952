/* kelp info: version, devices, libraries, layer types, zoo. */
#include <cblas.h>
#include <stdio.h>

#include "tools/cli.h"
#ifdef KELP_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

static void print_cuda(void)
{
#ifdef KELP_HAVE_CUDA
    kelp_cuda_version_info v;
    kelp_cuda_versions(&v);
    int count = kelp_cuda_device_count();
    printf("cuda:       compiled in (runtime %d, driver %d, cuDNN %d, cuBLAS %d); %d device%s\n", v.runtime,
           v.driver, v.cudnn, v.cublas, count, count == 1 ? "" : "s");
    for (int i = 0; i < count; i++) {
        char name[256];
        kelp_cuda_device_name(i, name, sizeof name);
        printf("  cuda:%d     %s\n", i, name);
    }
    puts("            the CUDA backend's ops are not implemented yet: training and inference run on the CPU");
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
