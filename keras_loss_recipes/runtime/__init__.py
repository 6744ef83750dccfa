"""The plumbing every layer runs on: the Keras backend, devices, processes, files, errors.

Runtime plumbing: the Keras backend and the device it computes on, several
devices (distribution), the process-wide Keras session state, TensorBoard event
files, config-file checks, composing the config without the command line, and
the one error type a user sees.

May import `losses` only, besides third-party packages; every other layer builds on it.
"""
