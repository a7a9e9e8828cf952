/* Files compiled into the kelp binary (cmake/embed_files.cmake): the module bundle's templates, tools/bundle/. */
#ifndef KELP_TOOLS_EMBEDDED_H
#define KELP_TOOLS_EMBEDDED_H

#include <stddef.h>

typedef struct kelp_embedded_file {
    const char *path; /* relative to tools/bundle/ */
    const unsigned char *data;
    size_t size;
} kelp_embedded_file;

extern const kelp_embedded_file kelp_bundle_files[]; /* ends with a NULL path */

#endif
