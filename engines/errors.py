"""The user-facing error: the library raises it for problems a user can fix (a missing file,
a bad option); the command line prints its message on one line, without a traceback."""


class UserError(Exception):
    """An error the user can fix; printed without a traceback (exit code 2: ``realtime.cli``)."""


class DeviceUnavailable(UserError, RuntimeError):
    """The device or accelerator asked for is not there (no CUDA device, a CPU build of torch,
    onnxruntime without its CUDA provider, TensorRT without a GPU)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable or not an SMPLer-X network."""


class ModelFileError(UserError, ValueError):
    """An exported model file (ONNX, TensorRT engine) that cannot be used."""


class DependencyMissing(UserError, ImportError):
    """An optional package a feature needs is not installed (the message names the extra)."""
