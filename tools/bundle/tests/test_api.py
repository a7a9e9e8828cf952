"""Tests of the bundle's DEEPaaS API, run in the bundle directory: python3 -m unittest discover -s tests
They call api.py directly as DEEPaaS would (needs deepaas installed: pip install -e .)."""
import fcntl
import importlib
import json
import os
import pickle
import struct
import sys
import tempfile
import unittest
import zlib
from collections import namedtuple
from pathlib import Path

from aiohttp import web

BUNDLE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BUNDLE))
INFO = json.loads((BUNDLE / "model" / "bundle.json").read_text())
api = importlib.import_module(INFO["package"] + ".api")

# what DEEPaaS passes for a file field
UploadedFile = namedtuple("UploadedFile", ("name", "filename", "content_type", "original_filename"))


def png(width, height, gray=True, pixels=True):
    """An 8-bit PNG of a diagonal gradient; without pixels, only its header (all a size check may read)."""
    channels = 1 if gray else 3
    rows = b"".join(b"\0" + bytes(((x + y) * 7 + c * 50) % 256 for x in range(width) for c in range(channels))
                    for y in range(height)) if pixels else b""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0 if gray else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def upload(data):
    fd, name = tempfile.mkstemp()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return UploadedFile("image", name, "application/octet-stream", "upload.png")


class ApiTest(unittest.TestCase):
    def test_metadata(self):
        meta = api.get_metadata()
        for key in ("id", "name", "description", "license", "author", "version"):
            self.assertIsInstance(meta[key], str)
        self.assertEqual(meta["classes"], INFO["classes"])

    def test_predict_answers_top_k_and_deletes_the_upload(self):
        api.warm()
        f = upload(png(40, 30, gray=False))
        answer = api.predict(image=f, top_k=3)
        self.assertEqual(answer["status"], "OK")
        self.assertEqual(len(answer["labels"]), min(3, len(INFO["classes"])))
        self.assertTrue(set(answer["labels"]) <= set(INFO["classes"]))
        probs = answer["probabilities"]
        self.assertEqual(probs, sorted(probs, reverse=True))
        self.assertTrue(0 < sum(probs) <= 1 + 1e-5)
        api.PredictionSchema().load(answer)  # the schema DEEPaaS validates the answer with
        self.assertFalse(os.path.exists(f.filename))

    def test_not_an_image_is_a_400_and_deleted(self):
        f = upload(b"just some text, not an image\n")
        with self.assertRaises(web.HTTPBadRequest) as caught:
            api.predict(image=f, top_k=1)
        self.assertFalse(os.path.exists(f.filename))
        # the error crosses from DEEPaaS's worker process to the server by pickle
        again = pickle.loads(pickle.dumps(caught.exception))
        self.assertIsInstance(again, web.HTTPBadRequest)
        self.assertEqual(again.reason, caught.exception.reason)

    def test_too_many_pixels_is_a_413_and_deleted(self):
        side = int(api.MAX_PIXELS ** 0.5) + 2
        f = upload(png(side, side, pixels=False))
        with self.assertRaises(web.HTTPRequestEntityTooLarge) as caught:
            api.predict(image=f, top_k=1)
        self.assertFalse(os.path.exists(f.filename))
        self.assertIsInstance(pickle.loads(pickle.dumps(caught.exception)), web.HTTPRequestEntityTooLarge)

    def test_train_while_another_runs_fails_at_once_naming_the_weights(self):
        # the lock another worker's training holds (engine/finetune.c: flock on the weights' .lock file)
        with open(str(api.WEIGHTS) + ".lock", "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with self.assertRaises(web.HTTPException) as caught:
                api.train(data=str(api.INFO_FILE), epochs=1)  # any existing file: refused before it is read
        # DEEPaaS gets it from the worker by pickle and answers str() of it as the training's "message"
        message = str(pickle.loads(pickle.dumps(caught.exception)))
        self.assertIn("another fine-tuning", message)
        self.assertIn(str(api.WEIGHTS), message)


if __name__ == "__main__":
    unittest.main()
