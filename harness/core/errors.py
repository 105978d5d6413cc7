"""The one base class for a user's mistakes.

A `UserError` is printed as its message alone (no traceback) and ends the command with exit
code 2: the input was wrong and nothing ran. Bugs are any other exception and keep their
traceback.
"""


class UserError(Exception):
    """Bad input (a suite, a flag, a missing file): print the message, exit 2."""

    exit_code = 2
