"""Error types. Every user-facing failure raises a :class:`GimbalError` subclass whose
message names the offending file or param and says how to fix it; stages print the
message and exit non-zero without a traceback (see :func:`gimbal.cli_utils.run_stage`)."""

from __future__ import annotations


class GimbalError(Exception):
    """Base class of all errors gimbal reports to users."""


class ParamError(GimbalError, ValueError):
    """A param in ``params.yaml`` (or a function argument) is missing or invalid."""


class DataError(GimbalError):
    """An input file (video, shard, image, manifest) is missing, corrupt or malformed."""


class FetchError(DataError):
    """A source in ``data.sources`` could not be downloaded."""


class DivergenceError(GimbalError):
    """Training produced a non-finite loss: the message names the step, the term, the learning rates and the
    last good checkpoint."""


class DiskFullError(GimbalError, OSError):
    """No space left on the device while writing a file: the message names the file and the space it needs."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) during a training loop, with the step reached and the step a rerun resumes from.
    Still a :class:`KeyboardInterrupt`, so every caller that stops on one still does."""


class ShapeError(GimbalError, ValueError):
    """A tensor has the wrong shape or dtype."""


class ModelFileError(DataError):
    """A torch file (a model file, a training checkpoint, pretrained weights) cannot be used. Every reader of such
    files (:func:`gimbal.checkpoint.read_torch_file`) raises one of the subclasses below, with a message that names
    the file and the fix."""


class ModelFileNotFound(ModelFileError):
    """The torch file does not exist."""


class ModelFileUnreadable(ModelFileError):
    """The file is not a torch file, is truncated or damaged, or holds objects other than tensors and plain values
    (it is read with ``weights_only=True``, so nothing in it runs)."""


class ModelFileCorrupt(ModelFileError):
    """The file's tensors do not match its checksum, or the checksum entry is missing or damaged."""


class ModelFileWrongKind(ModelFileError):
    """The file reads, but holds another kind of state (another format tag, a missing key, stored params that are
    not valid)."""


class ModelFileIncompatible(ModelFileError):
    """The file's weights or stored params do not fit the model they are loaded into (shapes, names, architecture)."""
