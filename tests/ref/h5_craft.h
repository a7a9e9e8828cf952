/* Raw-HDF5 helpers that tamper with dataset files, so that the reader's tests can build every kind of malformed
 * file the kelp writer refuses to produce. Every helper fails the running cmocka test when HDF5 fails. */
#ifndef KELP_TEST_H5_CRAFT_H
#define KELP_TEST_H5_CRAFT_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

hid_t h5c_open_rw(const char *path);
void h5c_close(hid_t file);

/* Attributes on `loc` (a file, group or dataset); an existing attribute of that name is replaced. */
void h5c_set_string(hid_t loc, const char *name, const char *value);
void h5c_set_strings(hid_t loc, const char *name, const char *const *values, size_t count);
/* Fixed-length, NUL-padded strings, as numpy's bytes_ arrays are stored. */
void h5c_set_fixed_strings(hid_t loc, const char *name, const char *const *values, size_t count, size_t size);
void h5c_set_int(hid_t loc, const char *name, int64_t value);
void h5c_delete_attr(hid_t loc, const char *name);

/* Replaces (or creates) the dataset at `path` (e.g. "/train/labels"): `type` is both the file and the memory
 * type of `data` (NULL writes nothing); dcpl H5P_DEFAULT makes it contiguous. */
void h5c_put(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims, hid_t dcpl, const void *data);
void h5c_delete(hid_t file, const char *path);
/* Overwrites `count` elements of dataset `path` from element `start` of its flattened extent. */
void h5c_write_elements(hid_t file, const char *path, hid_t type, hsize_t start, hsize_t count, const void *data);

/* File offset and stored size of the chunk of a chunked dataset that starts at element `chunk_start`. */
void h5c_chunk_location(const char *path, const char *dataset, const hsize_t *chunk_start, uint64_t *offset,
                        uint64_t *size);
/* Overwrites bytes of a file in place, to damage what HDF5 stored there. */
void h5c_poke(const char *path, uint64_t offset, const void *bytes, size_t count);

#endif
