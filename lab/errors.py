"""The base of every error a lab user can act on.

A topology that does not validate, a namespace that cannot be made, a
capture that does not start, a datapath the verifier refuses: each is a
:class:`LabError`, with a message that names the file, field or object and
says what is wrong. The CLI prints a LabError as one ``error:`` line and
exits 1, without importing the module that raised it; anything else is a
bug and keeps its traceback.

This module imports nothing, and every layer of the lab may use it.
"""


class LabError(Exception):
    """A failure the user can act on; its message is the whole story."""
