"""The backend's start-up chatter is dropped on a CPU machine, and nothing else is."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from keras_loss_recipes.runtime.quiet import drop_lines, noise_patterns

PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
NO_DRIVERS = ("I0000 00:00:1795656099.523922   27855 cudart_stub.cc:31] Could not find cuda drivers on your "
              "machine, GPU will not be used.\n")
CUINIT = ("E0000 00:00:1795656108.458000   27855 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
          "error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
# Printed on CPUs that oneDNN optimises for (AVX-512 and newer), whatever TF_CPP_MIN_LOG_LEVEL says.
ONEDNN = ("I0000 00:00:1796441676.879026    2209 port.cc:153] oneDNN custom operations are on. You may see slightly "
          "different numerical results due to floating-point round-off errors from different computation orders. "
          "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n")
REAL = "E0000 00:00:1795656108.458000   27855 some_kernel.cc:12] out of memory\n"


def test_cpu_machine_drops_the_cuda_notices_and_keeps_real_errors():
    text = PREAMBLE + NO_DRIVERS + PREAMBLE + NO_DRIVERS + CUINIT + REAL
    assert drop_lines(text, noise_patterns(gpu_present=False)) == REAL


def test_the_onednn_notice_is_dropped_on_every_machine_and_a_real_onednn_error_is_kept():
    real_onednn = "E0000 00:00:1796441676.879026    2209 port.cc:160] oneDNN failed to create a primitive\n"
    for gpu_present in (False, True):
        text = PREAMBLE + ONEDNN + NO_DRIVERS + PREAMBLE + ONEDNN + real_onednn + REAL
        kept = drop_lines(text, noise_patterns(gpu_present=gpu_present))
        assert kept == (NO_DRIVERS if gpu_present else "") + real_onednn + REAL


def test_gpu_machine_keeps_the_cuda_lines():
    text = PREAMBLE + NO_DRIVERS + CUINIT + REAL
    assert drop_lines(text, noise_patterns(gpu_present=True)) == NO_DRIVERS + CUINIT + REAL


def test_native_writes_are_filtered_and_the_rest_comes_through_in_order():
    # os.write(2, ...) is what C++ code does: below Python's sys.stderr.
    code = textwrap.dedent(f"""
        import os, sys
        from keras_loss_recipes.runtime.quiet import filtered_native_stderr, noise_patterns
        with filtered_native_stderr(noise_patterns(gpu_present=False)):
            os.write(2, {PREAMBLE.encode()!r})
            os.write(2, b"kept native line\\n")
            print("kept python line", file=sys.stderr)
            os.write(2, {CUINIT.encode()!r})
        print("after", file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "kept native line\nkept python line\nafter\n"
