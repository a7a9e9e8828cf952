"""ctypes binding to the bundle's lib/libkelp.so: the inference API of kelp/predictor.h.

Handles are plain Python objects holding a C pointer. DEEPaaS runs each worker in a process started with "spawn",
so every worker opens its own Predictor (api.py keeps it in a module global); nothing native crosses a process.
"""
import ctypes
import json
import os
from pathlib import Path

# kelp_status values (kelp/status.h)
OK, INVALID_ARG, NO_MEMORY, IO, FORMAT, SHAPE, UNSUPPORTED = 0, 1, 2, 3, 4, 5, 6


class KelpError(Exception):
    """A failed libkelp call: `status` is the kelp_status, the message names the file and what is wrong."""

    def __init__(self, status, message):
        super().__init__(status, message)  # both in args, so that it pickles across processes
        self.status = status
        self.message = message

    def __str__(self):
        return self.message


class _Options(ctypes.Structure):
    _fields_ = [("device", ctypes.c_char_p), ("threads", ctypes.c_int), ("max_pixels", ctypes.c_uint64),
                ("reserved", ctypes.c_uint64 * 4)]


class _Prediction(ctypes.Structure):
    _fields_ = [("count", ctypes.c_int), ("classes", ctypes.POINTER(ctypes.c_int)),
                ("labels", ctypes.POINTER(ctypes.c_char_p)), ("probabilities", ctypes.POINTER(ctypes.c_float))]


class _FinetuneOptions(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char_p), ("out", ctypes.c_char_p), ("epochs", ctypes.c_int),
                ("batch", ctypes.c_int), ("lr", ctypes.c_double), ("device", ctypes.c_char_p),
                ("threads", ctypes.c_int), ("seed", ctypes.c_uint64), ("reserved", ctypes.c_uint64 * 4)]


def _load(path):
    lib = ctypes.CDLL(str(path))
    sig = {
        "kelp_version": (ctypes.c_char_p, []),
        "kelp_last_error": (ctypes.c_char_p, []),
        "kelp_free": (None, [ctypes.c_void_p]),
        "kelp_predictor_defaults": (_Options, []),
        "kelp_predictor_open": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(ctypes.c_void_p)]),
        "kelp_predictor_close": (None, [ctypes.c_void_p]),
        "kelp_predictor_class_count": (ctypes.c_int, [ctypes.c_void_p]),
        "kelp_predictor_class_name": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int]),
        "kelp_predictor_predict_encoded": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                          ctypes.c_char_p, ctypes.c_int,
                                                          ctypes.POINTER(ctypes.POINTER(_Prediction))]),
        "kelp_prediction_free": (None, [ctypes.POINTER(_Prediction)]),
        "kelp_predictor_save_onnx": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        "kelp_finetune_defaults": (_FinetuneOptions, []),
        "kelp_finetune": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_FinetuneOptions),
                                         ctypes.POINTER(ctypes.c_void_p)]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib = None


def library(bundle):
    """libkelp.so of the bundle (KELP_LIBRARY overrides it), loaded once per process."""
    global _lib
    if _lib is None:
        path = os.environ.get("KELP_LIBRARY") or Path(bundle) / "lib" / "libkelp.so"
        try:
            _lib = _load(path)
        except OSError as e:  # a missing system library names itself here (see the bundle's Dockerfile)
            raise KelpError(IO, "cannot load %s: %s" % (path, e)) from e
    return _lib


def _check(lib, status):
    if status != OK:
        raise KelpError(status, lib.kelp_last_error().decode("utf-8", "replace"))


class Predictor:
    """An opened bundle or checkpoint: class names, and top-k predictions for encoded PNG/JPEG images."""

    _handle = None  # so that close() and __del__ are safe when opening failed

    def __init__(self, bundle, path=None, threads=0, max_pixels=0):
        self._lib = library(bundle)
        options = self._lib.kelp_predictor_defaults()
        options.threads = threads
        if max_pixels:
            options.max_pixels = max_pixels
        handle = ctypes.c_void_p()
        _check(self._lib, self._lib.kelp_predictor_open(str(path or bundle).encode(), ctypes.byref(options),
                                                        ctypes.byref(handle)))
        self._handle = handle

    def close(self):
        if self._handle:
            self._lib.kelp_predictor_close(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    @property
    def class_names(self):
        n = self._lib.kelp_predictor_class_count(self._handle)
        return [self._lib.kelp_predictor_class_name(self._handle, i).decode() for i in range(n)]

    def save_onnx(self, path):
        """Writes the model with its current weights as ONNX (replacing `path` atomically)."""
        _check(self._lib, self._lib.kelp_predictor_save_onnx(self._handle, str(path).encode()))

    def predict(self, data, name="image", top_k=5):
        """{"labels": [...], "probabilities": [...]} for one encoded image (bytes), most probable first."""
        result = ctypes.POINTER(_Prediction)()
        _check(self._lib, self._lib.kelp_predictor_predict_encoded(self._handle, data, len(data), name.encode(),
                                                                   top_k, ctypes.byref(result)))
        try:
            r = result.contents
            return {"labels": [r.labels[i].decode() for i in range(r.count)],
                    "probabilities": [float(r.probabilities[i]) for i in range(r.count)]}
        finally:
            self._lib.kelp_prediction_free(result)


def finetune(bundle, data, out, epochs=1, batch=0, lr=0.0, device="cpu", threads=0, seed=0):
    """Retrains the bundle's model on an HDF5 dataset and writes the new weights to `out`; returns the scores."""
    lib = library(bundle)
    options = lib.kelp_finetune_defaults()
    data, out, device = str(data).encode(), str(out).encode(), device.encode()  # kept alive during the call
    options.data, options.out, options.device = data, out, device
    options.epochs, options.batch, options.lr, options.threads, options.seed = epochs, batch, lr, threads, seed
    text = ctypes.c_void_p()
    _check(lib, lib.kelp_finetune(str(bundle).encode(), ctypes.byref(options), ctypes.byref(text)))
    try:
        return json.loads(ctypes.string_at(text.value).decode())
    finally:
        lib.kelp_free(text)
