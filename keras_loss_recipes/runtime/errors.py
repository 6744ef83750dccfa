"""The one exception type the user sees as a single line instead of a traceback, and the full disk's line."""
import contextlib


class UserError(Exception):
    """A problem with the user's input (config value, data files, paths).

    The message must name the bad value and what is allowed; the entry point
    prints it as one line and exits non-zero.
    """


@contextlib.contextmanager
def writing(path):
    """Name `path` in an OSError raised while writing it, where the writer did not (a zip archive's)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


def disk_full(err: BaseException) -> OSError | None:
    """The "no space left on device" error behind `err` (itself, or what it was raised from), if any."""
    import errno

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        err = err.__cause__ or err.__context__
    return None


def disk_full_message(run_dir, err: OSError) -> str:
    """One line: which file, how much room is left where the run writes, and how to go on."""
    import shutil

    try:
        free = f"{shutil.disk_usage(run_dir).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    what = f"writing {err.filename}" if err.filename else "writing a file"
    return (f"no space left on the device of {run_dir} ({free}) {what}; the files of the epochs before are "
            f"whole: free some space and run the same command (hydra.run.dir={run_dir}) to resume")
