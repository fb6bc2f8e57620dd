"""Errors that speak the user's language.

Every error a user can cause (a bad option, a missing file, an unreadable data set)
is raised as :class:`UsageError` with a one-line message that names the option and
the allowed range.  The command-line entry point turns it into that line on stderr and
exit status 2, never a traceback.
"""


class UsageError(Exception):
    """A user-caused error: printed as one line, exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class RunFailed(UsageError):
    """A run with valid options that the machine could not carry through (memory ran out, the disk filled):
    one line, exit status 1; the run directory records it as ``failed``."""

    exit_code = 1


class Interrupted(Exception):
    """Work stopped by SIGINT or SIGTERM where it can resume: one line on stderr saying what is kept and how
    to continue, exit status 128 + the signal's number, as ``perfedavg run`` does."""

    def __init__(self, signum: int, message: str):
        self.exit_code = 128 + int(signum)
        super().__init__(" ".join(str(message).split()))


class Diverged(Exception):
    """A run produced a NaN or infinite loss or parameter."""

    def __init__(self, round_index: int, what: str):
        self.round_index = round_index
        self.what = what
        super().__init__(f"diverged at round {round_index}: {what}")
