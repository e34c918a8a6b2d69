"""Plain-NumPy oracles for every CPU kernel, same names and arguments, written for clarity not speed.

Tests compare each kernel against its twin here; nothing in the training path imports this module.
"""

import math

import numpy as np

from nnctl.engine.cpu.dense import ACTIVATION_CODES
from nnctl.engine.cpu.losses import EPSILON, LOSS_CODES
from nnctl.engine.cpu.optim import CLIP_GLOBAL_NORM, CLIP_NORM, CLIP_VALUE, OPTIMIZER_CODES

_erf = np.vectorize(math.erf)
_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}


def activate(z, name, alpha):
    """act(z) in float64 for a named activation."""
    z = np.asarray(z, np.float64)
    if name == "linear":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "elu":
        return np.where(z > 0, z, alpha * np.expm1(z))
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "softplus":
        return np.logaddexp(0, z)
    if name == "gelu":
        return 0.5 * z * (1 + _erf(z / np.sqrt(2)))
    raise KeyError(name)


def bias_act_forward(z, bias, act, alpha, y):
    z += bias
    y[...] = activate(z, _NAMES[act], alpha)


def bias_act_backward(dy, z, y, act, alpha, dz, db):
    name, z64, dy64 = _NAMES[act], z.astype(np.float64), dy.astype(np.float64)
    if name == "softmax":
        s = activate(z64, name, alpha)
        out = s * (dy64 - (dy64 * s).sum(axis=1, keepdims=True))
    else:
        derivative = {
            "linear": lambda: np.ones_like(z64),
            "relu": lambda: (z64 > 0).astype(np.float64),
            "sigmoid": lambda: activate(z64, "sigmoid", 0) * (1 - activate(z64, "sigmoid", 0)),
            "tanh": lambda: 1 - np.tanh(z64) ** 2,
            "elu": lambda: np.where(z64 > 0, 1.0, alpha * np.exp(z64)),
            "leaky_relu": lambda: np.where(z64 > 0, 1.0, alpha),
            "softplus": lambda: activate(z64, "sigmoid", 0),
            "gelu": lambda: 0.5 * (1 + _erf(z64 / np.sqrt(2))) + z64 * np.exp(-z64 ** 2 / 2) / np.sqrt(2 * np.pi),
        }[name]()
        out = dy64 * derivative
    dz[...] = out
    db[...] = out.sum(axis=0)


def matmul(a, b, out):
    out[...] = a.astype(np.float64) @ b


def matmul_tn(a, b, out):
    out[...] = a.astype(np.float64).T @ b


def matmul_nt(a, b, out):
    out[...] = a.astype(np.float64) @ b.T


def take_rows(x, rows, out):
    out[...] = x[rows]


def dropout_forward(x, uniform, rate, y, mask):
    mask[...] = (uniform >= rate) / (1 - rate)
    y[...] = x * mask


def multiply(a, b, out):
    out[...] = a * b


def _csr_dense(indptr, indices, values, rows, width):
    dense = np.zeros((len(rows), width))
    for b, r in enumerate(rows):
        for k in range(indptr[r], indptr[r + 1]):
            dense[b, indices[k]] += values[k]
    return dense


def csr_matmul(indptr, indices, values, rows, w, out):
    out[...] = _csr_dense(indptr, indices, values, rows, w.shape[0]) @ w


def csr_t_matmul(indptr, indices, values, rows, dy, dw):
    dw[...] = _csr_dense(indptr, indices, values, rows, dw.shape[0]).T @ dy


def csr_transpose_rows(indptr, indices, values, rows, colptr, brow, bval):
    entries = [(indices[k], b, values[k]) for b, r in enumerate(rows) for k in range(indptr[r], indptr[r + 1])]
    entries.sort(key=lambda e: (e[0], e[1]))  # stable: repeated columns in a row keep their order
    colptr[0] = 0
    colptr[1:] = np.cumsum(np.bincount([e[0] for e in entries], minlength=len(colptr) - 1))
    brow[:len(entries)] = [e[1] for e in entries]
    bval[:len(entries)] = [e[2] for e in entries]
    return len(entries)


def csc_t_matmul(colptr, brow, bval, dy, dw, c0, c1):
    for c in range(c0, c1):
        p = np.arange(colptr[c], colptr[c + 1])
        dw[c] = bval[p].astype(np.float64) @ dy[brow[p]].astype(np.float64)


def csr_matmul_split(indptr, indices, values, rows, w, out, parts):
    csr_matmul(indptr, indices, values, rows, w, out)


def csc_t_matmul_split(colptr, brow, bval, dy, dw, bounds):
    csc_t_matmul(colptr, brow, bval, dy, dw, bounds[0], bounds[-1])


def sample_losses(code, delta, pred, target, labels):
    """Per-sample losses ℓᵢ (float64, shape (n,)), straight from the Keras definitions."""
    name = {v: k for k, v in LOSS_CODES.items()}[code]
    p, t = pred.astype(np.float64), target.astype(np.float64)
    if name.startswith("sparse_cce"):
        t = np.eye(pred.shape[1])[labels]
    if name == "bce_logits":
        return np.mean(np.logaddexp(0, p) - p * t, axis=1)
    if name == "bce_probs":
        q = np.clip(p, EPSILON, 1 - EPSILON)
        return -np.mean(t * np.log(q) + (1 - t) * np.log(1 - q), axis=1)
    if name in ("cce_logits", "sparse_cce_logits"):
        log_soft = p - p.max(axis=1, keepdims=True)
        log_soft -= np.log(np.exp(log_soft).sum(axis=1, keepdims=True))
        return -np.sum(t * log_soft, axis=1)
    if name in ("cce_probs", "sparse_cce_probs"):
        q = np.clip(p / p.sum(axis=1, keepdims=True), EPSILON, 1 - EPSILON)
        return -np.sum(t * np.log(q), axis=1)
    e = p - t
    if name == "mse":
        return np.mean(e ** 2, axis=1)
    if name == "mae":
        return np.mean(np.abs(e), axis=1)
    if name == "huber":
        a = np.abs(e)
        return np.mean(np.where(a <= delta, 0.5 * e ** 2, delta * a - 0.5 * delta ** 2), axis=1)
    if name == "log_cosh":
        return np.mean(np.log(np.cosh(e)), axis=1)
    if name == "kld":
        tc, pc = np.clip(t, EPSILON, 1), np.clip(p, EPSILON, 1)
        return np.sum(tc * np.log(tc / pc), axis=1)
    if name == "cosine":
        tn = t / np.sqrt(np.maximum((t ** 2).sum(axis=1, keepdims=True), 1e-12))
        pn = p / np.sqrt(np.maximum((p ** 2).sum(axis=1, keepdims=True), 1e-12))
        return -np.sum(tn * pn, axis=1)
    raise KeyError(name)


def loss_forward_backward(code, delta, pred, target, labels, weight, grad):
    """Value from `sample_losses`; gradient by central differences in float64 (slow, tiny inputs only)."""
    def total(p):
        return float(np.sum(weight * sample_losses(code, delta, p, target, labels)) / p.shape[0])
    p64, h = pred.astype(np.float64), 1e-6
    numeric = np.zeros_like(p64)
    for index in np.ndindex(p64.shape):
        up, down = p64.copy(), p64.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (total(up) - total(down)) / (2 * h)
    grad[...] = numeric
    return total(p64)


def sum_squares(x):
    return float(np.sum(x.astype(np.float64) ** 2))


def regularize(w, g, l1, l2):
    w64 = w.astype(np.float64)
    g += l1 * np.sign(w64) + 2 * l2 * w64
    return float(l1 * np.abs(w64).sum() + l2 * (w64 ** 2).sum())


def clip_gradients(offsets, grads, clip_mode, clip):
    g = grads.astype(np.float64)
    global_norm = np.sqrt(np.sum(g ** 2))
    for start, stop in zip(offsets[:-1], offsets[1:]):
        s = slice(start, stop)
        norm = np.sqrt(np.sum(g[s] ** 2))
        if clip_mode == CLIP_NORM and norm > clip:
            g[s] *= clip / norm
        elif clip_mode == CLIP_GLOBAL_NORM and global_norm > clip:
            g[s] *= clip / global_norm
        elif clip_mode == CLIP_VALUE:
            g[s] = np.clip(g[s], -clip, clip)
    grads[...] = g


def optimizer_step(code, hp, iteration, offsets, params, grads, slot1, slot2, slot3, clip_mode, clip):
    """Keras 3's update rules, tensor by tensor, vectorized NumPy in float64."""
    name = {v: k for k, v in OPTIMIZER_CODES.items()}[code]
    lr, wd = hp[0], hp[1]
    clip_gradients(offsets, grads, clip_mode, clip)
    for start, stop in zip(offsets[:-1], offsets[1:]):
        s = slice(start, stop)
        g = grads[s].astype(np.float64)
        p = params[s].astype(np.float64)
        p -= lr * wd * p
        if name == "sgd":
            momentum, nesterov = hp[2], hp[3]
            if momentum == 0:
                p -= lr * g
            else:
                m = momentum * slot1[s] - lr * g
                slot1[s] = m
                p += momentum * m - lr * g if nesterov else m
        elif name in ("rmsprop", "rmsprop_plain"):
            rho, momentum, eps, centered = hp[2], hp[3], hp[4], hp[5]
            v = rho * slot1[s] + (1 - rho) * g ** 2
            slot1[s] = v
            denominator = v + eps
            if centered:
                mg = rho * slot2[s] + (1 - rho) * g
                slot2[s] = mg
                denominator = denominator - mg ** 2
            increment = lr * g / np.sqrt(denominator)
            if momentum > 0:
                slot3[s] = momentum * slot3[s] + increment
                p -= slot3[s]
            else:
                p -= increment
        elif name == "adam":
            beta_1, beta_2, eps, amsgrad = hp[2], hp[3], hp[4], hp[5]
            step = iteration + 1
            alpha = lr * np.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
            m = slot1[s] + (g - slot1[s]) * (1 - beta_1)
            v = slot2[s] + (g ** 2 - slot2[s]) * (1 - beta_2)
            slot1[s], slot2[s] = m, v
            if amsgrad:
                v = np.maximum(slot3[s], v)
                slot3[s] = v
            p -= alpha * m / (np.sqrt(v) + eps)
        elif name == "adagrad":
            slot1[s] = slot1[s] + g ** 2
            p -= lr * g / np.sqrt(slot1[s] + hp[2])
        params[s] = p


def rmsprop_rows_step(hp, iteration, rows, last, params, grads, slot1):
    rho = np.float64(np.float32(hp[2]))
    for r in rows:
        slot1[r] = slot1[r] * rho ** (iteration - 1 - last[r])  # the decays of the steps that skipped row r
        slot1[r] = rho * slot1[r] + (1 - rho) * grads[r].astype(np.float64) ** 2
        params[r] = params[r] - hp[0] * grads[r] / np.sqrt(slot1[r] + hp[4])
        last[r] = iteration


def sgd_rows_step(hp, iteration, rows, last, params, grads, slot1):
    for r in rows:
        params[r] = params[r] - hp[0] * grads[r]
        last[r] = iteration


def rows_flush(hp, iteration, last, slot1, decays):
    if decays:
        slot1 *= (np.float64(np.float32(hp[2])) ** (iteration - 1 - last))[:, None]
    last[:] = iteration - 1


def counter_uniform(key: int, counter: int, size: int) -> np.ndarray:
    """The CUDA dropout's uniforms (nnctl/engine/cuda/dropout.py) in NumPy: SplitMix64's finalizer of
    key ⊕ counter·M + (i + 1)·φ for i < size, its top 24 bits over 2²⁴ (float32)."""
    mask64 = (1 << 64) - 1
    state = np.uint64((key ^ (counter * 0xD1342543DE82EF95)) & mask64)
    with np.errstate(over="ignore"):
        z = state + (np.arange(size, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) / np.float32(16777216.0)
