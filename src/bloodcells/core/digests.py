"""File digests: the SHA-256 manifest of downloaded data, and the MD5 that dvc.lock records for a model (the exported
ONNX file and the model card name their checkpoint by it). Standard library only: predict's ONNX engine uses it
without torch."""
import hashlib


def file_digest(path, algorithm="sha256"):
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()
