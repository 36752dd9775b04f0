"""Every error the CLI turns into a one-line message and exit code 2. Kept free of heavy imports so the
command line can catch them without importing torch."""


class RaSeRecError(ValueError):
    """Base: the message names the file, line, column or key and what was expected."""


class ConfigError(RaSeRecError):
    """A configuration key or value is wrong."""


class DataError(RaSeRecError):
    """Bad input data."""


class CheckpointError(RaSeRecError):
    """A model folder is incomplete or its files do not match their recorded hashes."""


class MemoryBankError(RaSeRecError):
    """A memory-bank operation cannot be done as asked."""


class StepError(RaSeRecError):
    """A step cannot run as asked (e.g. a changed config for an existing output)."""
