"""Process set-up shared by the workflow's scripts: log files, Keras backend, threads, seeds."""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys

# Keras backend -> (module it needs, what to install).
BACKENDS = {
    "tensorflow": (
        "tensorflow",
        "pip install tensorflow-cpu (CPU) or 'tensorflow[and-cuda]' (GPU)",
    ),
    "jax": ("jax", "pip install jax (CPU) or 'jax[cuda12]' (GPU)"),
}

# Whether models.compile_model XLA-compiles the steps (config compute.jit_compile): process
# set-up like the backend and the dtype policy, set by configure().
JIT_COMPILE: bool | str = "auto"


class BackendError(RuntimeError):
    """The configured Keras backend cannot be used; the message says why and what to do."""


# TensorFlow's C++ start-up messages (oneDNN, CPU features) are absl INFO lines logged before
# absl::InitializeLog(), which absl prints whatever TF_CPP_MIN_LOG_LEVEL says (abseil-cpp pull
# requests 1718 and 1957, "Don't log unwanted when not initialized"). So the log is written
# through a filter that drops INFO lines and absl's notice; warnings and errors pass.
LOG_FILTER = r"""
import re, signal, sys
# Schedulers and Ctrl-C signal every process of a job at once: the filter reads on to the end,
# so what the script writes while it stops gracefully (a checkpoint) still reaches the log.
for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGXCPU"):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
info = re.compile(rb"^I\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] ")  # I0000 00:00:17.5 42 port.cc:153]
notice = b"WARNING: All log messages before absl::InitializeLog() is called"
dropped = False
for line in sys.stdin.buffer:
    # A dropped INFO line's continuation (cpu_feature_guard's "To enable ...") goes too.
    dropped = bool(info.match(line)) or line.startswith(notice) or (
        dropped and line.startswith(b"To enable the following instructions")
    )
    if not dropped:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


def log_to(path: str) -> None:
    """Send this process's stdout and stderr (Python's and C++'s) line by line to ``path``.

    They pass through a separate filter process (LOG_FILTER), which also drains what a crashing
    process wrote last; at exit this process waits for it, so the log is complete when the job
    ends.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO off where TensorFlow honours it
    with open(path, "wb") as log:
        log_filter = subprocess.Popen(
            [sys.executable, "-c", LOG_FILTER], stdin=subprocess.PIPE, stdout=log
        )
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(log_filter.stdin.fileno(), stream.fileno())
        stream.reconfigure(line_buffering=True)
    log_filter.stdin.close()
    atexit.register(_finish_log, log_filter)


def _finish_log(log_filter: subprocess.Popen) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)  # the pipe's last writer closes: the filter ends
    log_filter.wait(timeout=60)


def select_backend(name: str, threads: int | None = None, cpu_devices: int = 1) -> None:
    """Make Keras run on ``name`` (config ``compute.backend``); call before Keras is imported.

    Keras reads KERAS_BACKEND once, when it is first imported, so a later change would be
    silently ignored: that is an error here.
    """
    if name not in BACKENDS:
        raise BackendError(
            f"unknown Keras backend {name!r} (config compute.backend); "
            f"allowed values: {', '.join(BACKENDS)}"
        )
    module, install = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        raise BackendError(
            f"compute.backend is {name!r}, but the {module!r} package is not installed: "
            f"{install}, or set compute.backend to another of {', '.join(BACKENDS)}"
        )
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise BackendError(
            f"Keras was imported with the {keras.backend.backend()!r} backend before "
            f"{name!r} was selected: call runtime.select_backend first"
        )
    os.environ["KERAS_BACKEND"] = name
    if name == "jax":
        # XLA reads its flags when jax starts. Deterministic ops matter on GPUs only (XLA's
        # CPU kernels are deterministic); threads, so parallel jobs do not oversubscribe.
        flags = ["--xla_gpu_deterministic_ops=true"]
        if cpu_devices > 1:
            flags.append(force_cpu_devices_flag(cpu_devices))
        if threads is not None:
            flags += [
                "--xla_cpu_multi_thread_eigen=false",
                f"intra_op_parallelism_threads={threads}",
            ]
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()


def force_cpu_devices_flag(devices: int) -> str:
    """The XLA flag that splits the host CPU into ``devices`` JAX devices (config
    ``distribution.devices`` on a machine without accelerators).

    XLA reads it when jax starts: set it before jax is imported, which select_backend checks.
    It only shapes the host ("cpu") platform: on a GPU node jax's devices are still the
    GPUs, which distribution.setup then uses, so setting it there is harmless.
    """
    if "jax" in sys.modules:
        raise BackendError(
            f"jax was imported before {devices} CPU devices could be set up "
            "(distribution.devices): call runtime.configure first"
        )
    return f"--xla_force_host_platform_device_count={devices}"


def configure(
    threads: int,
    seed: int | None = None,
    *,
    backend: str = "tensorflow",
    deterministic: bool = True,
    precision: str = "float32",
    jit_compile: bool | str = "auto",
    cpu_devices: int = 1,
) -> None:
    """Call before the first Keras op: the backend, threads, seed and numeric precision.

    Threads come from Snakemake's ``threads`` so that parallel jobs do not oversubscribe
    the machine; with a seed (and ``deterministic``), training repeats bit for bit on one
    machine. ``precision``: a Keras dtype policy, e.g. "mixed_float16" on GPUs.
    ``cpu_devices`` (JAX only; config ``distribution.devices``): the host CPU appears as this
    many devices, for data-parallel training on a machine without GPUs (mnistflow.distribution).
    """
    global JIT_COMPILE
    if cpu_devices > 1 and backend != "jax":
        raise BackendError(
            f"{cpu_devices} devices per process (distribution.devices) need compute.backend: jax"
        )
    select_backend(backend, threads, cpu_devices)
    JIT_COMPILE = jit_compile
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        if seed is not None and deterministic:
            # Also turns off XLA (Keras' jit_compile="auto" then stays off): for softmax
            # epochs on a CPU it made no difference here (1.69 s with, 1.77 s without).
            tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(precision)
    if seed is not None:
        keras.utils.set_random_seed(seed)
