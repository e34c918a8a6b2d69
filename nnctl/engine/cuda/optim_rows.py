"""CUDA twins of nnctl/engine/cpu/optim_rows.py: optimizer updates of the rows a step used (Embedding's
tables), with RMSprop's skipped decays caught up lazily — one thread per (row, unit), the row's bookkeeping
(`last`) written by its unit-0 thread after every unit has read it (a second launch)."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nnctl.engine.cpu.optim import LR
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on


@cuda.jit(**KERNEL)
def _rmsprop_rows(lr, rho, rho64, epsilon, iteration, rows, last, params, grads, slot1):
    i, row0, row_step = cells()
    if i < params.shape[1]:
        for j in range(row0, rows.shape[0], row_step):
            r = rows[j]
            missed = iteration - 1 - last[r]
            if missed > 0:
                slot1[r, i] *= np.float32(rho64 ** missed)
            g = grads[r, i]
            slot1[r, i] = rho * slot1[r, i] + (np.float32(1.0) - rho) * g * g
            params[r, i] = params[r, i] * np.float32(1.0) - lr * g / math.sqrt(slot1[r, i] + epsilon)


@cuda.jit(**KERNEL)
def _sgd_rows(lr, rows, params, grads):
    i, row0, row_step = cells()
    if i < params.shape[1]:
        for j in range(row0, rows.shape[0], row_step):
            r = rows[j]
            params[r, i] = params[r, i] * np.float32(1.0) - lr * grads[r, i]


@cuda.jit(**KERNEL)
def _mark(rows, last, iteration):
    j = cuda.grid(1)
    if j < rows.shape[0]:
        last[rows[j]] = iteration


def _host(array):
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


def rmsprop_rows_step(hp, iteration, rows, last, params, grads, slot1):
    """RMSprop (no momentum, not centered, no weight decay) on `rows` of one table, as the CPU kernel."""
    hp, f32 = _host(hp), np.float32
    rho = f32(hp[2])
    _rmsprop_rows[on(*grid2(rows.shape[0], params.shape[1]))](f32(hp[LR]), rho, np.float64(rho), f32(hp[4]), iteration,
                                                              rows, last, params, grads, slot1)
    _mark[on(*grid1(rows.shape[0]))](rows, last, iteration)


def sgd_rows_step(hp, iteration, rows, last, params, grads, slot1):
    """Plain SGD on `rows`: p[r] −= lr·g[r]."""
    hp = _host(hp)
    _sgd_rows[on(*grid2(rows.shape[0], params.shape[1]))](np.float32(hp[LR]), rows, params, grads)
    _mark[on(*grid1(rows.shape[0]))](rows, last, iteration)


@cuda.jit(**KERNEL)
def _flush(rho64, iteration, last, slot1, decays):
    i, row0, row_step = cells()
    if i < slot1.shape[1] and decays != 0:
        for r in range(row0, slot1.shape[0], row_step):
            missed = iteration - 1 - last[r]
            if missed > 0:
                slot1[r, i] *= np.float32(rho64 ** missed)


@cuda.jit(**KERNEL)
def _settle(last, iteration):
    r = cuda.grid(1)
    if r < last.shape[0]:
        last[r] = iteration - 1


def rows_flush(hp, iteration, last, slot1, decays):
    """Brings every row's accumulator up to date after `iteration` steps (decays != 0: RMSprop's ρ-decay)."""
    hp = _host(hp)
    if decays != 0:
        _flush[on(*grid2(*slot1.shape))](np.float64(np.float32(hp[2])), iteration, last, slot1, decays)
    _settle[on(*grid1(last.shape[0]))](last, iteration)


KERNELS = ("rmsprop_rows_step", "sgd_rows_step", "rows_flush")
