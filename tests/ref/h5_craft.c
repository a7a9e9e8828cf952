#include "h5_craft.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static void h5_check(int ok, const char *what, const char *name)
{
    if (!ok)
        fail_msg("h5_craft: %s '%s' failed", what, name);
}

hid_t h5c_open_rw(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    h5_check(file >= 0, "open", path);
    return file;
}

void h5c_close(hid_t file)
{
    h5_check(H5Fclose(file) >= 0, "close", "file");
}

void h5c_delete_attr(hid_t loc, const char *name)
{
    if (H5Aexists(loc, name) > 0)
        h5_check(H5Adelete(loc, name) >= 0, "delete attribute", name);
}

static void put_attr(hid_t loc, const char *name, hid_t type, hid_t space, const void *data)
{
    h5c_delete_attr(loc, name);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    h5_check(attr >= 0 && H5Awrite(attr, type, data) >= 0, "write attribute", name);
    H5Aclose(attr);
}

static hid_t vlen_utf8(void)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    return type;
}

void h5c_set_string(hid_t loc, const char *name, const char *value)
{
    hid_t type = vlen_utf8(), space = H5Screate(H5S_SCALAR);
    put_attr(loc, name, type, space, &value);
    H5Sclose(space);
    H5Tclose(type);
}

void h5c_set_strings(hid_t loc, const char *name, const char *const *values, size_t count)
{
    hsize_t n = count;
    hid_t type = vlen_utf8(), space = H5Screate_simple(1, &n, NULL);
    put_attr(loc, name, type, space, values);
    H5Sclose(space);
    H5Tclose(type);
}

void h5c_set_fixed_strings(hid_t loc, const char *name, const char *const *values, size_t count, size_t size)
{
    char buf[4096] = {0};
    h5_check(count * size <= sizeof buf, "fit fixed strings of", name);
    for (size_t i = 0; i < count; i++)
        memcpy(buf + i * size, values[i], strnlen(values[i], size));
    hsize_t n = count;
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate_simple(1, &n, NULL);
    H5Tset_size(type, size);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    put_attr(loc, name, type, space, buf);
    H5Sclose(space);
    H5Tclose(type);
}

void h5c_set_int(hid_t loc, const char *name, int64_t value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    h5c_delete_attr(loc, name);
    hid_t attr = H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    h5_check(attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT64, &value) >= 0, "write attribute", name);
    H5Aclose(attr);
    H5Sclose(space);
}

void h5c_delete(hid_t file, const char *path)
{
    if (H5Lexists(file, path, H5P_DEFAULT) > 0)
        h5_check(H5Ldelete(file, path, H5P_DEFAULT) >= 0, "delete", path);
}

void h5c_put(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims, hid_t dcpl, const void *data)
{
    h5c_delete(file, path);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dset = H5Dcreate2(file, path, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    h5_check(dset >= 0, "create dataset", path);
    if (data)
        h5_check(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, "write dataset", path);
    H5Dclose(dset);
    H5Sclose(space);
}

void h5c_write_elements(hid_t file, const char *path, hid_t type, hsize_t start, hsize_t count, const void *data)
{
    hid_t dset = H5Dopen2(file, path, H5P_DEFAULT);
    h5_check(dset >= 0, "open dataset", path);
    hid_t space = H5Dget_space(dset);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[8];
    H5Sget_simple_extent_dims(space, dims, NULL);
    /* A run of the flattened extent is a union of single-element selections, which any rank allows. */
    hsize_t coords[8], one[8];
    H5Sselect_none(space);
    for (hsize_t e = start; e < start + count; e++) {
        hsize_t rest = e;
        for (int d = rank - 1; d >= 0; d--) {
            coords[d] = rest % dims[d];
            rest /= dims[d];
            one[d] = 1;
        }
        H5Sselect_hyperslab(space, H5S_SELECT_OR, coords, NULL, one, NULL);
    }
    hid_t mem = H5Screate_simple(1, &count, NULL);
    h5_check(H5Dwrite(dset, type, mem, space, H5P_DEFAULT, data) >= 0, "write elements of", path);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(dset);
}

void h5c_chunk_location(const char *path, const char *dataset, const hsize_t *chunk_start, uint64_t *offset,
                        uint64_t *size)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dset = file >= 0 ? H5Dopen2(file, dataset, H5P_DEFAULT) : H5I_INVALID_HID;
    unsigned mask;
    haddr_t addr = 0;
    hsize_t bytes = 0;
    h5_check(dset >= 0 && H5Dget_chunk_info_by_coord(dset, chunk_start, &mask, &addr, &bytes) >= 0 && bytes > 0,
             "locate a chunk of", dataset);
    *offset = addr;
    *size = bytes;
    H5Dclose(dset);
    H5Fclose(file);
}

void h5c_poke(const char *path, uint64_t offset, const void *bytes, size_t count)
{
    FILE *f = fopen(path, "r+b");
    h5_check(f != NULL, "open for poking", path);
    h5_check(fseek(f, (long)offset, SEEK_SET) == 0 && fwrite(bytes, 1, count, f) == count, "poke", path);
    fclose(f);
}
