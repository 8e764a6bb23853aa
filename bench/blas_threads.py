"""Pins the OpenBLAS that a Python peer runs on to a number of threads.

Debian's PyTorch, numpy and FAISS do their GEMMs in OpenBLAS (pthreads build), whose thread
pool is its own: torch.set_num_threads and faiss.omp_set_num_threads size OpenMP's team, not
it. Without this a peer measured "on one thread" runs its matrix products on every core.
"""
import ctypes


def set_blas_threads(n):
    """Sets every OpenBLAS loaded in this process to n threads; returns their paths."""
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if ".so" in line.split()[-1]})
    done = []
    for path in paths:
        if "blas" not in path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        fn = getattr(lib, "openblas_set_num_threads", None)
        if fn is None:
            continue
        fn.argtypes = [ctypes.c_int]
        fn(int(n))
        get = getattr(lib, "openblas_get_num_threads", None)
        if get is not None and get() != n:
            raise SystemExit("blas_threads: %s kept %d threads, not %d" % (path, get(), n))
        done.append(path)
    return done
