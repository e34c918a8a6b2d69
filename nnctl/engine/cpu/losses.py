"""Loss kernels: value and gradient in one pass, fused with sigmoid/softmax from logits where stable.

Reduction follows Keras's `sum_over_batch_size`: loss = Σᵢ wᵢ·ℓᵢ / n, where ℓᵢ is one sample's loss.
"""

import math

from numba import njit

from nnctl.engine.settings import KERNEL

(BCE_LOGITS, BCE_PROBS, CCE_LOGITS, CCE_PROBS, SPARSE_CCE_LOGITS, SPARSE_CCE_PROBS,
 MSE, MAE, HUBER, KLD, COSINE, LOG_COSH) = range(12)
LOSS_CODES = {
    "bce_logits": BCE_LOGITS, "bce_probs": BCE_PROBS, "cce_logits": CCE_LOGITS, "cce_probs": CCE_PROBS,
    "sparse_cce_logits": SPARSE_CCE_LOGITS, "sparse_cce_probs": SPARSE_CCE_PROBS, "mse": MSE, "mae": MAE,
    "huber": HUBER, "kld": KLD, "cosine": COSINE, "log_cosh": LOG_COSH,
}
EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [ε, 1 − ε] before log


@njit(**KERNEL)
def _log_sigmoid(v):
    # log σ(v) = −softplus(−v), written so neither branch overflows.
    return min(v, 0.0) - math.log1p(math.exp(-abs(v)))


@njit(inline="always", **KERNEL)
def _reduce(sample_loss, delta, pred, target, labels, weight, grad):
    """Σᵢ wᵢ·ℓᵢ / n, where sample_loss(i, scale, …) returns ℓᵢ and writes grad[i] = scale·∂ℓᵢ/∂pred[i] with
    scale = wᵢ / n. Inlined into each loss kernel below, so sample_loss is a constant there."""
    n = pred.shape[0]
    total = 0.0
    for i in range(n):
        total += weight[i] * sample_loss(i, weight[i] / n, delta, pred, target, labels, grad)
    return total / n


# One kernel per loss, so a model compiles only its own (a kernel branching on a loss code compiled all
# twelve: 1.2 s, linked again into every caller). Each returns the batch loss and writes grad = ∂loss/∂pred:
# <loss>(delta, pred, target, labels, weight, grad). pred: (n, units), logits for the *_logits losses and the
# model's output otherwise; target: (n, units) float targets (unused by the sparse losses); labels: (n,) int
# class ids (sparse losses only); weight: (n,) sample weights; grad: (n, units); delta: the Huber threshold.
#     for i: loss += weight[i] · ℓ(pred[i], target[i]) / n;  grad[i] = weight[i] · ∂ℓ/∂pred[i] / n

@njit(**KERNEL)
def _bce_logits(i, scale, delta, pred, target, labels, grad):
    units = pred.shape[1]
    sample = 0.0
    for j in range(units):
        z = pred[i, j]
        t = target[i, j]
        # −[t log σ(z) + (1−t) log σ(−z)], gradient σ(z) − t
        sample -= t * _log_sigmoid(z) + (1.0 - t) * _log_sigmoid(-z)
        p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        grad[i, j] = scale * (p - t) / units
    return sample / units


@njit(**KERNEL)
def bce_logits(delta, pred, target, labels, weight, grad):
    return _reduce(_bce_logits, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _bce_probs(i, scale, delta, pred, target, labels, grad):
    units = pred.shape[1]
    sample = 0.0
    for j in range(units):
        p = min(max(pred[i, j], EPSILON), 1.0 - EPSILON)
        t = target[i, j]
        sample -= t * math.log(p) + (1.0 - t) * math.log(1.0 - p)
        clipped = pred[i, j] < EPSILON or pred[i, j] > 1.0 - EPSILON
        grad[i, j] = 0.0 if clipped else scale * (-t / p + (1.0 - t) / (1.0 - p)) / units
    return sample / units


@njit(**KERNEL)
def bce_probs(delta, pred, target, labels, weight, grad):
    return _reduce(_bce_probs, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _log_normalizer(pred, i):
    """log Σ_j exp(pred[i, j]), shifted by the row's maximum."""
    top = pred[i, 0]
    for j in range(1, pred.shape[1]):
        top = max(top, pred[i, j])
    norm = 0.0
    for j in range(pred.shape[1]):
        norm += math.exp(pred[i, j] - top)
    return top + math.log(norm)


@njit(**KERNEL)
def _cce_logits(i, scale, delta, pred, target, labels, grad):
    log_norm = _log_normalizer(pred, i)
    sample = 0.0
    mass = 0.0
    for j in range(pred.shape[1]):
        t = target[i, j]
        sample -= t * (pred[i, j] - log_norm)
        mass += t
    for j in range(pred.shape[1]):  # softmax·Σt − t; equals p − t for one-hot targets
        grad[i, j] = scale * (math.exp(pred[i, j] - log_norm) * mass - target[i, j])
    return sample


@njit(**KERNEL)
def cce_logits(delta, pred, target, labels, weight, grad):
    return _reduce(_cce_logits, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _sparse_cce_logits(i, scale, delta, pred, target, labels, grad):
    log_norm = _log_normalizer(pred, i)
    label = labels[i]
    for j in range(pred.shape[1]):
        grad[i, j] = scale * math.exp(pred[i, j] - log_norm)
    grad[i, label] -= scale
    return log_norm - pred[i, label]


@njit(**KERNEL)
def sparse_cce_logits(delta, pred, target, labels, weight, grad):
    return _reduce(_sparse_cce_logits, delta, pred, target, labels, weight, grad)


@njit(inline="always", **KERNEL)
def _renormalized_cce(i, scale, pred, target, labels, sparse, grad):
    # Keras renormalizes the outputs to sum to 1, then clips, then takes −Σ t log p.
    units = pred.shape[1]
    mass = 0.0
    for j in range(units):
        mass += pred[i, j]
    sample = 0.0
    inner = 0.0  # Σ_c (∂ℓ/∂q_c) q_c, for the renormalization's Jacobian
    for j in range(units):
        q = pred[i, j] / mass
        t = (1.0 if j == labels[i] else 0.0) if sparse else target[i, j]
        qc = min(max(q, EPSILON), 1.0 - EPSILON)
        sample -= t * math.log(qc)
        dq = 0.0 if (q < EPSILON or q > 1.0 - EPSILON) else -t / qc
        grad[i, j] = dq
        inner += dq * q
    for j in range(units):
        grad[i, j] = scale * (grad[i, j] - inner) / mass
    return sample


@njit(**KERNEL)
def _cce_probs(i, scale, delta, pred, target, labels, grad):
    return _renormalized_cce(i, scale, pred, target, labels, False, grad)


@njit(**KERNEL)
def cce_probs(delta, pred, target, labels, weight, grad):
    return _reduce(_cce_probs, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _sparse_cce_probs(i, scale, delta, pred, target, labels, grad):
    return _renormalized_cce(i, scale, pred, target, labels, True, grad)


@njit(**KERNEL)
def sparse_cce_probs(delta, pred, target, labels, weight, grad):
    return _reduce(_sparse_cce_probs, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _mse(i, scale, delta, pred, target, labels, grad):
    units = pred.shape[1]
    sample = 0.0
    for j in range(units):
        e = pred[i, j] - target[i, j]
        sample += e * e
        grad[i, j] = scale * 2.0 * e / units
    return sample / units


@njit(**KERNEL)
def mse(delta, pred, target, labels, weight, grad):
    return _reduce(_mse, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _mae(i, scale, delta, pred, target, labels, grad):
    units = pred.shape[1]
    sample = 0.0
    for j in range(units):
        e = pred[i, j] - target[i, j]
        sample += abs(e)
        grad[i, j] = scale * (1.0 if e > 0 else (-1.0 if e < 0 else 0.0)) / units
    return sample / units


@njit(**KERNEL)
def mae(delta, pred, target, labels, weight, grad):
    return _reduce(_mae, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _huber(i, scale, delta, pred, target, labels, grad):
    units = pred.shape[1]
    sample = 0.0
    for j in range(units):
        e = pred[i, j] - target[i, j]
        if abs(e) <= delta:
            sample += 0.5 * e * e
            grad[i, j] = scale * e / units
        else:
            sample += delta * abs(e) - 0.5 * delta * delta
            grad[i, j] = scale * delta * (1.0 if e > 0 else -1.0) / units
    return sample / units


@njit(**KERNEL)
def huber(delta, pred, target, labels, weight, grad):
    return _reduce(_huber, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _kld(i, scale, delta, pred, target, labels, grad):
    sample = 0.0
    for j in range(pred.shape[1]):
        t = min(max(target[i, j], EPSILON), 1.0)
        p = min(max(pred[i, j], EPSILON), 1.0)
        sample += t * math.log(t / p)
        clipped = pred[i, j] < EPSILON or pred[i, j] > 1.0
        grad[i, j] = 0.0 if clipped else -scale * t / p
    return sample


@njit(**KERNEL)
def kld(delta, pred, target, labels, weight, grad):
    return _reduce(_kld, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _cosine(i, scale, delta, pred, target, labels, grad):
    # ℓ = −t̂·p̂ with x̂ = x / sqrt(max(Σx², 1e-12)), as Keras's l2_normalize
    units = pred.shape[1]
    tt = 0.0
    pp = 0.0
    tp = 0.0
    for j in range(units):
        tt += target[i, j] * target[i, j]
        pp += pred[i, j] * pred[i, j]
        tp += target[i, j] * pred[i, j]
    tn = math.sqrt(max(tt, 1e-12))
    pn = math.sqrt(max(pp, 1e-12))
    cos = tp / (tn * pn)
    floor = pp < 1e-12  # the norm is a constant there, so p̂ is linear in p
    for j in range(units):
        radial = 0.0 if floor else cos * pred[i, j] / pn
        grad[i, j] = -scale * (target[i, j] / tn - radial) / pn
    return -cos


@njit(**KERNEL)
def cosine(delta, pred, target, labels, weight, grad):
    return _reduce(_cosine, delta, pred, target, labels, weight, grad)


@njit(**KERNEL)
def _log_cosh(i, scale, delta, pred, target, labels, grad):
    units = pred.shape[1]
    sample = 0.0
    for j in range(units):
        e = pred[i, j] - target[i, j]
        # log cosh e = |e| + log1p(exp(−2|e|)) − log 2, stable for large |e|
        sample += abs(e) + math.log1p(math.exp(-2.0 * abs(e))) - 0.6931471805599453
        grad[i, j] = scale * math.tanh(e) / units
    return sample / units


@njit(**KERNEL)
def log_cosh(delta, pred, target, labels, weight, grad):
    return _reduce(_log_cosh, delta, pred, target, labels, weight, grad)


# Indexed by LOSS_CODES.
LOSS_KERNELS = (bce_logits, bce_probs, cce_logits, cce_probs, sparse_cce_logits, sparse_cce_probs, mse, mae, huber,
                kld, cosine, log_cosh)


def loss_forward_backward(code, delta, pred, target, labels, weight, grad):
    """The batch loss, writing grad = ∂loss/∂pred, for a loss code: calls that loss's kernel."""
    return LOSS_KERNELS[code](delta, pred, target, labels, weight, grad)
