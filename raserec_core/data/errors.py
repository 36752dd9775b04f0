"""The one error type for bad input data: its message names the file, the line or column, and what was expected."""


from ..errors import DataError

__all__ = ["DataError"]
