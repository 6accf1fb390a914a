"""One exception type for problems a user can fix (bad input, bad config), so entry points
can report them in one line instead of a stack trace."""


class LlmworksError(RuntimeError):
    """A problem with the user's input or configuration; the message says how to fix it."""
