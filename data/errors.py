"""The two kinds of data problem: DataError (refused, the message names the file and what
is wrong) and DataWarning (handled: masked, zeroed, skipped or resampled, and said)."""


class DataWarning(UserWarning):
    """A data problem that is handled (masked, skipped, resampled) but worth knowing."""


class DataError(ValueError):
    """Bad input data; the message names the file and what is wrong."""
