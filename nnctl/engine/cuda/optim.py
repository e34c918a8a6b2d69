"""CUDA twins of nnctl/engine/cpu/optim.py: `sum_squares`, `regularize`, `clip_gradients`, `optimizer_step`
over the flat parameter buffers, same arguments as the CPU kernels.

Every update is element-wise (one thread an element, float32 as Keras's); sums are taken over fixed chunks of
`_CHUNK` elements, then the partials in order by one thread, so they do not depend on the launch geometry.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nnctl.engine.cpu.optim import (ADAGRAD, ADAM, CLIP_GLOBAL_NORM, CLIP_NONE, CLIP_NORM, CLIP_VALUE, LR, RMSPROP,
                                    RMSPROP_PLAIN, SGD, WEIGHT_DECAY)
from nnctl.engine.cuda import elementwise
from nnctl.engine.cuda.launch import KERNEL, grid1, on, scratch

_CHUNK = 4096


@cuda.jit(**KERNEL)
def _chunk_squares(x, start, stop, partials):
    c = cuda.grid(1)
    first = start + c * _CHUNK
    if first < stop:
        total = 0.0
        for i in range(first, min(stop, first + _CHUNK)):
            total += np.float64(x[i]) * x[i]
        partials[c] = total


@cuda.jit(**KERNEL)
def _sum_partials(partials, count, out, slot, add):
    """out[slot] = Σ partials in order (added to out[slot] when `add`)."""
    if cuda.grid(1) == 0:
        total = 0.0
        for c in range(count):
            total += partials[c]
        out[slot] = out[slot] + total if add else total


def _squares(x, start, stop, out, slot):
    chunks = max(1, (stop - start + _CHUNK - 1) // _CHUNK)
    partials = scratch("square partials", chunks)
    _chunk_squares[on(*grid1(chunks))](x, start, stop, partials)
    _sum_partials[on(1, 1)](partials, chunks, out, slot, False)


def _host(array):
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


def sum_squares(x):
    """Σ x² in float64. x: 1-D."""
    out = scratch("sum of squares", 1)
    _squares(x, 0, x.shape[0], out, 0)
    return float(_host(out)[0])


@cuda.jit(**KERNEL)
def _regularize(w, g, l1, l2, partials):
    c = cuda.grid(1)
    first = c * _CHUNK
    if first < w.shape[0]:
        penalty = 0.0
        for i in range(first, min(w.shape[0], first + _CHUNK)):
            v = w[i]
            sign = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
            penalty += l1 * abs(v) + l2 * v * v
            g[i] += l1 * sign + 2.0 * l2 * v
        partials[c] = penalty


def regularize(w, g, l1, l2, out=None, slot=0):
    """g += l1·sign(w) + 2·l2·w; returns the penalty l1·Σ|w| + l2·Σw² (w, g: 1-D, same size). With `out` (a
    float64 device array) the penalty is added to out[slot] instead: no synchronization per step."""
    chunks = max(1, (w.shape[0] + _CHUNK - 1) // _CHUNK)
    partials = scratch("penalty partials", chunks)
    _regularize[on(*grid1(chunks))](w, g, float(l1), float(l2), partials)
    if out is not None:
        _sum_partials[on(1, 1)](partials, chunks, out, slot, True)
        return None
    total = scratch("penalty", 1)
    _sum_partials[on(1, 1)](partials, chunks, total, 0, False)
    return float(_host(total)[0])


@cuda.jit(device=True)
def _tensor_of(offsets, i):
    low, high = 0, offsets.shape[0] - 2
    while low < high:  # the last tensor whose start is ≤ i
        middle = (low + high + 1) // 2
        if offsets[middle] <= i:
            low = middle
        else:
            high = middle - 1
    return low


@cuda.jit(**KERNEL)
def _scale_clip(grads, offsets, scales, limit):
    i = cuda.grid(1)
    if i < grads.shape[0]:
        scale = np.float32(scales[_tensor_of(offsets, i)])
        grads[i] = min(max(grads[i] * scale, -limit), limit)


@cuda.jit(**KERNEL)
def _tensor_chunk_squares(x, chunk_starts, chunk_stops, partials):
    c = cuda.grid(1)
    if c < partials.shape[0]:
        total = 0.0
        for i in range(chunk_starts[c], chunk_stops[c]):
            total += np.float64(x[i]) * x[i]
        partials[c] = total


@cuda.jit(**KERNEL)
def _clip_scales(partials, first_chunks, each, clip, scales):
    """One thread: each tensor's sum of squares (its chunks' partials in order), then each tensor's scale (its own
    norm when `each`, else the global norm) so that the norm is ≤ clip."""
    if cuda.grid(1) != 0:
        return
    tensors = scales.shape[0]
    total = 0.0
    for t in range(tensors):
        own = 0.0
        for c in range(first_chunks[t], first_chunks[t + 1]):
            own += partials[c]
        scales[t] = own
        total += own
    for t in range(tensors):
        norm = math.sqrt(scales[t] if each else total)
        scales[t] = clip / norm if norm > clip else 1.0


_CLIP_PLANS: dict = {}  # id(offsets) → (offsets, the chunks' device arrays): made once a parameter layout


def _clip_plan(offsets):
    """(chunk starts, chunk stops, each tensor's first chunk, tensor scales) on the device for the tensors of
    `offsets`: every tensor cut in chunks of _CHUNK elements. The offsets are read back once (kept with the
    plan, so their id stays theirs); later steps launch without a copy or a wait."""
    plan = _CLIP_PLANS.get(id(offsets))
    if plan is None:
        bounds = _host(offsets).astype(np.int64)
        starts, stops, firsts = [], [], [0]
        for t in range(bounds.shape[0] - 1):
            edges = list(range(int(bounds[t]), int(bounds[t + 1]), _CHUNK)) or [int(bounds[t])]
            starts += edges
            stops += [min(edge + _CHUNK, int(bounds[t + 1])) for edge in edges]
            firsts.append(len(starts))
        plan = _CLIP_PLANS[id(offsets)] = (offsets, cuda.to_device(np.array(starts, np.int64)),
                                           cuda.to_device(np.array(stops, np.int64)),
                                           cuda.to_device(np.array(firsts, np.int64)),
                                           cuda.device_array(bounds.shape[0] - 1, np.float64))
    return plan[1:]


def clip_gradients(offsets, grads, clip_mode, clip):
    """Clips grads in place: each tensor's norm (CLIP_NORM), their global norm (CLIP_GLOBAL_NORM) to ≤ clip,
    or each element to [−clip, clip] (CLIP_VALUE), as the CPU kernel; the norms and scales stay on the device."""
    if clip_mode == CLIP_NONE:
        return
    starts, stops, firsts, scales = _clip_plan(offsets)
    if clip_mode in (CLIP_NORM, CLIP_GLOBAL_NORM):
        partials = scratch("clip partials", starts.shape[0])
        _tensor_chunk_squares[on(*grid1(starts.shape[0]))](grads, starts, stops, partials)
        _clip_scales[on(1, 1)](partials, firsts, clip_mode == CLIP_NORM, float(clip), scales)
    else:
        elementwise.fill[on(*grid1(scales.shape[0]))](scales, 1.0)
    limit = np.float32(clip) if clip_mode == CLIP_VALUE else np.float32(np.inf)
    _scale_clip[on(*grid1(grads.shape[0]))](grads, offsets, scales, limit)


@cuda.jit(**KERNEL)
def _update(code, lr, keep, alpha, a, b, c, d, params, grads, s1, s2, s3):
    i = cuda.grid(1)
    if i < params.shape[0]:
        update_element(code, lr, keep, alpha, a, b, c, d, params, grads, s1, s2, s3, i)


@cuda.jit(device=True)
def update_element(code, lr, keep, alpha, a, b, c, d, params, grads, s1, s2, s3, i):
    """Parameter i's update (the kernel's cell, shared with fused.py's whole-step kernel)."""
    g = grads[i]
    one = np.float32(1.0)
    if code == SGD:
        if a == 0.0:
            params[i] = params[i] * keep - lr * g
        else:
            m = a * s1[i] - lr * g
            s1[i] = m
            params[i] = params[i] * keep + (a * m - lr * g if b != 0.0 else m)
    elif code == RMSPROP or code == RMSPROP_PLAIN:
        s1[i] = a * s1[i] + (one - a) * g * g
        denominator = s1[i] + c
        if code == RMSPROP and d != 0.0:
            s2[i] = a * s2[i] + (one - a) * g
            denominator -= s2[i] * s2[i]
        increment = lr * g / math.sqrt(denominator)
        if code == RMSPROP and b > 0.0:
            s3[i] = b * s3[i] + increment
            increment = s3[i]
        params[i] = params[i] * keep - increment
    elif code == ADAM:
        s1[i] += (g - s1[i]) * (one - a)
        s2[i] += (g * g - s2[i]) * (one - b)
        v = s2[i]
        if d != 0.0:
            s3[i] = max(s3[i], s2[i])
            v = s3[i]
        params[i] = params[i] * keep - alpha * s1[i] / (math.sqrt(v) + c)
    elif code == ADAGRAD:
        s1[i] += g * g
        params[i] = params[i] * keep - lr * g / math.sqrt(s1[i] + a)


def step_size(code, hp, iteration) -> np.float32:
    """The update's step size at `iteration`: the learning rate; Adam's with both bias corrections folded in,
    as Keras does."""
    if code != ADAM:
        return np.float32(hp[LR])
    step = iteration + 1
    return np.float32(hp[LR] * math.sqrt(1.0 - hp[3] ** step) / (1.0 - hp[2] ** step))


def optimizer_step(code, hp, iteration, offsets, params, grads, slot1, slot2, slot3, clip_mode, clip):
    """One update of every parameter for an optimizer code, the gradients clipped first as asked."""
    if clip_mode != CLIP_NONE:
        clip_gradients(offsets, grads, clip_mode, clip)
    hp = _host(hp)
    lr, keep, a, b, c, d = update_scalars(hp)
    _update[on(*grid1(params.shape[0]))](code, lr, keep, step_size(code, hp, iteration), a, b, c, d, params, grads,
                                         slot1, slot2, slot3)


def update_scalars(hp) -> tuple:
    """The update's float32 scalars from the `hp` vector: learning rate, weight kept (decay), the optimizer's own."""
    f32 = np.float32
    return (f32(hp[LR]), f32(1.0 - hp[LR] * hp[WEIGHT_DECAY])) + tuple(f32(hp[i]) for i in range(2, 6))


@cuda.jit(**KERNEL)
def _update_at(code, lr, keep, step_sizes, state, first, a, b, c, d, params, grads, s1, s2, s3):
    i = cuda.grid(1)
    if i < params.shape[0]:
        update_element(code, lr, keep, step_sizes[state[0] - first], a, b, c, d, params, grads, s1, s2, s3, i)


def optimizer_step_at(code, hp, step_sizes, state, first, offsets, params, grads, slot1, slot2, slot3, clip_mode,
                      clip):
    """optimizer_step for the step numbered state[0] on the device: its step size is step_sizes[state[0] − first]
    (the same launch serves every step of a recorded graph, nnctl/engine/cuda/graphs.py)."""
    if clip_mode != CLIP_NONE:
        clip_gradients(offsets, grads, clip_mode, clip)
    lr, keep, a, b, c, d = update_scalars(_host(hp))
    _update_at[on(*grid1(params.shape[0]))](code, lr, keep, step_sizes, state, first, a, b, c, d, params, grads,
                                            slot1, slot2, slot3)


KERNELS = ("sum_squares", "regularize", "clip_gradients", "optimizer_step", "optimizer_step_at")
