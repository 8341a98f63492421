"""User-facing errors.

Every failure a user can cause (a bad name, a missing file, a wrong shape)
raises :class:`LeanmlError` with a message that names the thing and the fix.
The CLI prints such errors as one line and exits non-zero; anything else is a
bug and keeps its traceback.

Example:
    >>> try:
    ...     raise LeanmlError("unknown model 'vgx'", hint="choose one of: vgg, resnet")
    ... except LeanmlError as e:
    ...     print(e)
    unknown model 'vgx' (choose one of: vgg, resnet)
"""

from __future__ import annotations


class LeanmlError(Exception):
    """An error caused by input, with a hint saying how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)
