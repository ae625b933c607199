"""The one exception type for bad user input: its message is one line naming the problem and the fix."""


class UserError(Exception):
    """A problem with what the user gave (a path, a file, an option); the CLI prints it and exits with code 2."""
