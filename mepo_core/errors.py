"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class MepoError(Exception):
    """Base class for errors caused by the user's input or environment (not bugs)."""


class SourceError(MepoError):
    """A video, image or camera could not be opened or read."""


class TakeFormatError(MepoError):
    """An NPZ take is missing keys, has a wrong format version, or holds no valid frames."""
