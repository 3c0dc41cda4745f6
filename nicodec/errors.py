"""The one exception type the command line turns into a single clear error line."""


class NicodecError(Exception):
    """A user-facing error: bad input, missing model, corrupt file. Never a bug."""
