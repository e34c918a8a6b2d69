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


@njit(**KERNEL)
def loss_forward_backward(code, delta, pred, target, labels, weight, grad):
    """Returns the batch loss and writes grad = ∂loss/∂pred.

    pred: (n, units) — logits for the *_LOGITS codes, the model's output otherwise; target: (n, units)
    float targets (unused by sparse codes); labels: (n,) int class ids (sparse codes only); weight: (n,)
    sample weights; grad: (n, units); delta: the Huber threshold.
        for i: loss += weight[i] * ℓ(pred[i], target[i]) / n;  grad[i] = weight[i] * ∂ℓ/∂pred[i] / n
    """
    n, units = pred.shape
    total = 0.0
    for i in range(n):
        scale = weight[i] / n
        sample = 0.0
        if code == BCE_LOGITS:
            for j in range(units):
                z = pred[i, j]
                t = target[i, j]
                # −[t log σ(z) + (1−t) log σ(−z)], gradient σ(z) − t
                sample -= t * _log_sigmoid(z) + (1.0 - t) * _log_sigmoid(-z)
                p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
                grad[i, j] = scale * (p - t) / units
            sample /= units
        elif code == BCE_PROBS:
            for j in range(units):
                p = min(max(pred[i, j], EPSILON), 1.0 - EPSILON)
                t = target[i, j]
                sample -= t * math.log(p) + (1.0 - t) * math.log(1.0 - p)
                clipped = pred[i, j] < EPSILON or pred[i, j] > 1.0 - EPSILON
                grad[i, j] = 0.0 if clipped else scale * (-t / p + (1.0 - t) / (1.0 - p)) / units
            sample /= units
        elif code == CCE_LOGITS or code == SPARSE_CCE_LOGITS:
            top = pred[i, 0]
            for j in range(1, units):
                top = max(top, pred[i, j])
            norm = 0.0
            for j in range(units):
                norm += math.exp(pred[i, j] - top)
            log_norm = top + math.log(norm)
            if code == SPARSE_CCE_LOGITS:
                label = labels[i]
                sample = log_norm - pred[i, label]
                for j in range(units):
                    grad[i, j] = scale * math.exp(pred[i, j] - log_norm)
                grad[i, label] -= scale
            else:
                mass = 0.0
                for j in range(units):
                    t = target[i, j]
                    sample -= t * (pred[i, j] - log_norm)
                    mass += t
                for j in range(units):  # softmax·Σt − t; equals p − t for one-hot targets
                    grad[i, j] = scale * (math.exp(pred[i, j] - log_norm) * mass - target[i, j])
        elif code == CCE_PROBS or code == SPARSE_CCE_PROBS:
            # Keras renormalizes the outputs to sum to 1, then clips, then takes −Σ t log p.
            mass = 0.0
            for j in range(units):
                mass += pred[i, j]
            inner = 0.0  # Σ_c (∂ℓ/∂q_c) q_c, for the renormalization's Jacobian
            for j in range(units):
                q = pred[i, j] / mass
                t = (1.0 if j == labels[i] else 0.0) if code == SPARSE_CCE_PROBS else target[i, j]
                qc = min(max(q, EPSILON), 1.0 - EPSILON)
                sample -= t * math.log(qc)
                dq = 0.0 if (q < EPSILON or q > 1.0 - EPSILON) else -t / qc
                grad[i, j] = dq
                inner += dq * q
            for j in range(units):
                grad[i, j] = scale * (grad[i, j] - inner) / mass
        elif code == MSE:
            for j in range(units):
                e = pred[i, j] - target[i, j]
                sample += e * e
                grad[i, j] = scale * 2.0 * e / units
            sample /= units
        elif code == MAE:
            for j in range(units):
                e = pred[i, j] - target[i, j]
                sample += abs(e)
                grad[i, j] = scale * (1.0 if e > 0 else (-1.0 if e < 0 else 0.0)) / units
            sample /= units
        elif code == HUBER:
            for j in range(units):
                e = pred[i, j] - target[i, j]
                if abs(e) <= delta:
                    sample += 0.5 * e * e
                    grad[i, j] = scale * e / units
                else:
                    sample += delta * abs(e) - 0.5 * delta * delta
                    grad[i, j] = scale * delta * (1.0 if e > 0 else -1.0) / units
            sample /= units
        elif code == LOG_COSH:
            for j in range(units):
                e = pred[i, j] - target[i, j]
                # log cosh e = |e| + log1p(exp(−2|e|)) − log 2, stable for large |e|
                sample += abs(e) + math.log1p(math.exp(-2.0 * abs(e))) - 0.6931471805599453
                grad[i, j] = scale * math.tanh(e) / units
            sample /= units
        elif code == KLD:
            for j in range(units):
                t = min(max(target[i, j], EPSILON), 1.0)
                p = min(max(pred[i, j], EPSILON), 1.0)
                sample += t * math.log(t / p)
                clipped = pred[i, j] < EPSILON or pred[i, j] > 1.0
                grad[i, j] = 0.0 if clipped else -scale * t / p
        elif code == COSINE:
            # ℓ = −t̂·p̂ with x̂ = x / sqrt(max(Σx², 1e-12)), as Keras's l2_normalize
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
            sample = -cos
            floor = pp < 1e-12  # the norm is a constant there, so p̂ is linear in p
            for j in range(units):
                radial = 0.0 if floor else cos * pred[i, j] / pn
                grad[i, j] = -scale * (target[i, j] / tn - radial) / pn
        total += weight[i] * sample
    return total / n
