"""Bad input as one line: `UserError` for what the user gave, and `boundary_line`, the one place where errors from
outside (the filesystem, a safetensors or torch weights file) become such a line, naming the path and the fix.

Nothing here imports torch or safetensors: the CLI's handler uses it on every command, `--help` included.
"""

from __future__ import annotations

import errno
import os
import re

MAX_LINE = 300
"""Characters an error line may take (the prefix `amt-core CMD: error: ` included); a longer one is cut."""


class UserError(Exception):
    """A problem with what the user gave (a path, a file, an option); the CLI prints it and exits with code 2."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# errno -> (what happened at PATH, the fix); the conditions of the machine a user can change
_OS_PROBLEMS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full at {path}", "free space there or write to another folder"),
    errno.EDQUOT: ("disk quota exceeded at {path}", "free space in your quota or write to another folder"),
    errno.EROFS: ("{path} is on a read-only filesystem", "choose a writable folder"),
    errno.EACCES: ("permission denied at {path}", "choose a folder you may write, or fix its permissions"),
    errno.EPERM: ("operation not permitted at {path}", "choose a folder you may write, or fix its permissions"),
    errno.EIO: ("I/O error at {path}", "check the disk (dmesg), then try again"),
    errno.EFBIG: ("file too large at {path}", "write to a filesystem that allows larger files"),
    errno.ENAMETOOLONG: ("the path {path} is too long", "choose a shorter path"),
    errno.ENOENT: ("{path} does not exist", "check the path"),
    errno.ENOTDIR: ("a part of {path} is a file, not a folder", "check the path"),
    errno.EISDIR: ("{path} is a folder", "give a file"),
    errno.EMFILE: ("too many open files at {path}", "raise the limit (ulimit -n) or use fewer --workers"),
}
# what `save_file` and `safe_open` put in their message around the OS's error code
_OS_ERROR_CODE = re.compile(r"os error (\d+)")


def short(text: str, limit: int = MAX_LINE) -> str:
    """`text` on one line (terminal colour codes dropped, whitespace runs as one space), cut to `limit` characters."""
    flat = " ".join(_ANSI.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 4].rstrip() + " ..."


def os_error_line(err: OSError, path: object = None) -> str:
    """One line for a failed file operation: what happened, at which path, and the fix."""
    where = path if path is not None else err.filename
    problem = _OS_PROBLEMS.get(err.errno or -1)
    if where is None:
        reason = err.strerror or str(err) or type(err).__name__
        return f"{reason}; {problem[1]}" if problem else reason
    if problem is None:
        return f"cannot use {where} ({err.strerror or err}); check the path and the disk"
    what, fix = problem
    return f"{what.format(path=where)}; {fix}"


def safetensors_os_error(err: BaseException, path: object) -> OSError | None:
    """The OSError a safetensors error stands for ("... No space left on device (os error 28)"), with `path`, or None
    when it does not come from the OS (a corrupt header, a wrong dtype)."""
    found = _OS_ERROR_CODE.search(str(err))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def torch_load_problem(err: BaseException) -> str:
    """What went wrong in `torch.load(weights_only=True)`, in a few words: the global it refused, or the first line
    of the error without PyTorch's page of advice."""
    text = _ANSI.sub("", str(err))
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return f"it holds a Python object ({refused.group(1)}) that a weights-only load refuses"
    unpickler = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if unpickler:
        return short(unpickler.group(1), 120)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = re.split(r"(?<=\.)\s", lines[0], maxsplit=1)[0] if lines else ""  # the first sentence, not the advice
    return short(first, 120) if first else type(err).__name__


def choices(wanted: str, names: list[str] | tuple[str, ...], shown: int = 6) -> str:
    """The names a user could have meant, short: 'did you mean 'seed'? 22 keys: device, seed, ... (+16 more)'."""
    import difflib  # only a typo needs it; this module is on every `amt-core` start-up path, --help included

    names = list(names)
    close = difflib.get_close_matches(wanted, names, n=2, cutoff=0.6)
    guess = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{guess}{len(names)} choices: {summarise_keys(names, shown)}"


def summarise_keys(keys: list[str], shown: int = 1) -> str:
    """The first few of a list of keys and how many more there are: 'blocks.0.x (+57 more)'."""
    head = ", ".join(keys[:shown])
    return head + (f" (+{len(keys) - shown} more)" if len(keys) > shown else "")


def boundary_line(err: BaseException) -> str | None:
    """The one line for an error from outside the program that no command turned into a `UserError`, or None for
    an error of the program itself (which stays a traceback: it is a bug to report).

    OSErrors of the conditions in `_OS_PROBLEMS` (a full, read-only or forbidden disk, a missing path) name their
    path; a safetensors error names its OS cause or the file's damage; a pickle or torch load error says it is not
    a weights file.
    """
    if isinstance(err, OSError) and err.errno in _OS_PROBLEMS:
        return os_error_line(err)
    kind = type(err)
    if kind.__name__ == "SafetensorError" or kind.__module__.startswith("safetensors"):
        os_error = safetensors_os_error(err, "a weights file")
        if os_error is not None:
            return os_error_line(os_error)
        return f"a weights file is corrupt or not safetensors ({short(str(err), 120)}); use another file"
    if kind.__module__ in ("_pickle", "pickle") and kind.__name__ == "UnpicklingError":
        return f"a file is not a weights file amt-core can load ({torch_load_problem(err)}); use another file"
    return None
