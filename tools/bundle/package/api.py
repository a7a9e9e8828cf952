"""DEEPaaS v2 API of a kelp module bundle (https://docs.ai4os.eu, deepaas 2.x with webargs 5).

The bundle's files are found next to this package (or under $KELP_BUNDLE):
  model/bundle.json          what `kelp export` knew: name, title, task, classes, metrics, limits
  model/weights.safetensors  the weights (a kelp checkpoint without optimizer state)
  lib/libkelp.so             the engine, through _kelp.py (ctypes)
DEEPaaS starts each worker as a new process ("spawn"); each opens the model once, in warm() or at its first
prediction, and reopens it when `train` (perhaps in another worker) has replaced the weights.
"""
import json
import os
import tempfile
from pathlib import Path

from aiohttp import web
import marshmallow
from webargs import fields, validate

from . import _kelp

BUNDLE = Path(os.environ.get("KELP_BUNDLE") or Path(__file__).resolve().parents[1])
WEIGHTS = BUNDLE / "model" / "weights.safetensors"
INFO_FILE = BUNDLE / "model" / "bundle.json"
INFO = json.loads(INFO_FILE.read_text())
# Uploads declaring more pixels than this are refused unread (413); KELP_MAX_PIXELS overrides the bundle's value.
MAX_PIXELS = int(os.environ.get("KELP_MAX_PIXELS") or INFO["max_pixels"])
THREADS = int(os.environ.get("KELP_THREADS") or 0)

_model = None
_model_stamp = None


# predict and train run in DEEPaaS's worker processes, and what they raise is pickled back to the server. aiohttp's
# own HTTP errors do not survive that trip (unpickling calls __init__ with the wrong arguments, which kills the
# pool's result thread and hangs the server), so these say how to rebuild themselves.
class BadRequest(web.HTTPBadRequest):
    def __init__(self, reason):
        super().__init__(reason=reason)

    def __reduce__(self):
        return (type(self), (self.reason,))


class TooLarge(web.HTTPRequestEntityTooLarge):
    def __init__(self, reason, max_size=0, actual_size=0):
        super().__init__(max_size=max_size, actual_size=actual_size, text="413: " + reason)
        self.args = (reason, max_size, actual_size)

    def __reduce__(self):
        return (type(self), self.args)


class ServerError(web.HTTPInternalServerError):
    def __init__(self, reason):
        super().__init__(reason=reason)

    def __reduce__(self):
        return (type(self), (self.reason,))


def _http_reason(text):
    # a reason phrase is one line of latin-1 text
    return " ".join(str(text).split()).encode("latin-1", "replace").decode("latin-1")[:500]


def _weights_stamp():
    st = WEIGHTS.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _predictor():
    """This worker's model, reopened (with bundle.json) when the weights file changed since it was opened."""
    global _model, _model_stamp, INFO
    stamp = _weights_stamp()
    if _model is None or stamp != _model_stamp:
        if _model is not None:
            _model.close()
            INFO = json.loads(INFO_FILE.read_text())
        _model = _kelp.Predictor(BUNDLE, threads=THREADS, max_pixels=MAX_PIXELS)
        _model_stamp = stamp
    return _model


def get_metadata():
    info = json.loads(INFO_FILE.read_text())  # fresh: `train` may have changed the classes
    return {
        "id": info["name"],
        "name": info["title"],
        "description": info["summary"],
        "license": info["license"],
        "author": info["author"],
        "version": info["version"],
        "url": info["source_url"],
        "task": info["task"],
        "classes": info["classes"],
        "metrics": info.get("metrics"),
        "engine": "kelp " + _kelp.library(BUNDLE).kelp_version().decode(),
    }


def warm():
    _predictor()


def get_predict_args():
    return {
        "image": fields.Raw(required=True, metadata={"type": "file", "location": "form",
                                                        "description": "A PNG or JPEG image."}),
        # the arguments are read once, at start: a retrained model may have another number of classes
        "top_k": fields.Int(load_default=5, validate=validate.Range(min=1, max=1000),
                            metadata={"description": "How many classes to return, most probable first (at most "
                                                     "the number of classes)."}),
        "accept": fields.Str(metadata={"location": "headers", "description": "Answer format."},
                             validate=validate.OneOf(["application/json"])),
    }


class PredictionSchema(marshmallow.Schema):
    """The answer of the platform's image classifiers; the DEEPaaS UI draws its widget from these keys."""
    status = fields.Str(required=True)
    labels = fields.List(fields.Str(), required=True)
    probabilities = fields.List(fields.Float(), required=True)


schema = PredictionSchema


def predict(**kwargs):
    upload = kwargs["image"]
    # DEEPaaS writes every upload to a temporary file and never deletes it: this function always does.
    try:
        data = Path(upload.filename).read_bytes()
        name = getattr(upload, "original_filename", None) or "image"
        try:
            model = _predictor()
        except (_kelp.KelpError, OSError, ValueError) as e:  # the bundle's fault, not the upload's
            raise ServerError(_http_reason("cannot open the model: %s" % e))
        try:
            result = model.predict(data, name=name, top_k=kwargs.get("top_k") or 5)
        except _kelp.KelpError as e:
            if e.status == _kelp.FORMAT:
                raise BadRequest(_http_reason("not a PNG or JPEG image: %s" % e))
            if e.status == _kelp.UNSUPPORTED:
                raise BadRequest(_http_reason("an image kelp cannot decode: %s" % e))
            if e.status == _kelp.INVALID_ARG:
                raise TooLarge(_http_reason(e), MAX_PIXELS, len(data))
            raise ServerError(_http_reason(e))
        return {"status": "OK", **result}
    finally:
        try:
            os.unlink(upload.filename)
        except OSError:
            pass


def get_train_args():
    return {
        "data": fields.Str(required=True, metadata={"description": "Path of an HDF5 dataset (kelp data import) "
                                                                    "on the server, with the model's classes."}),
        "epochs": fields.Int(load_default=1, validate=validate.Range(min=1, max=1000)),
        "batch_size": fields.Int(load_default=0, validate=validate.Range(min=0, max=4096),
                                 metadata={"description": "0: the batch the model was trained with."}),
        "learning_rate": fields.Float(load_default=0.0, validate=validate.Range(min=0, max=10),
                                      metadata={"description": "0: the model's original learning rate."}),
        "device": fields.Str(load_default="cpu", validate=validate.OneOf(["cpu"])),
    }


def _record_training(model, result, data):
    """bundle.json describes the weights now served: their class names, and the fine-tuning's own evaluation in
    place of `kelp export`'s (which measured the weights that were replaced)."""
    metrics = {"top1": result["top1"], "top5": result["top5"], "images": result["images"],
               "split": result["scored_split"], "data": str(data), "source": "train"}
    info = dict(INFO, classes=model.class_names, metrics=metrics)
    fd, tmp = tempfile.mkstemp(dir=INFO_FILE.parent, prefix=".bundle.json.")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, INFO_FILE)


def train(**kwargs):
    """Fine-tunes the bundled model on the dataset and replaces model/weights.safetensors with the best epoch (and
    model/model.onnx, when the bundle has one), and records the new class names and the fine-tuning's test metrics in
    model/bundle.json. DEEPaaS wraps the answer as {"output": ..., "finish_date": ...}.
    One training at a time, whichever worker runs it: the engine locks model/weights.safetensors.lock, and a second
    `train` fails at once with a message that names the weights and says another fine-tuning is running (DEEPaaS
    shows it as the training's status "error" and its "message")."""
    data = Path(kwargs["data"])
    if not data.is_file():
        raise BadRequest(_http_reason("%s: no such dataset file on the server" % data))
    try:
        result = _kelp.finetune(BUNDLE, data, WEIGHTS, epochs=kwargs.get("epochs") or 1,
                                batch=kwargs.get("batch_size") or 0, lr=kwargs.get("learning_rate") or 0.0,
                                device=kwargs.get("device") or "cpu", threads=THREADS)
    except _kelp.KelpError as e:
        raise ServerError(_http_reason(e))
    model = _predictor()
    onnx = BUNDLE / "model" / "model.onnx"
    if onnx.exists():  # keep the ONNX copy in step with the new weights, or drop it
        try:
            model.save_onnx(onnx)
        except _kelp.KelpError as e:
            onnx.unlink()
            result["onnx"] = "removed, could not be rewritten: %s" % e
    _record_training(model, result, data)
    return result
