"""Plain-NumPy oracles for the normalization kernels (nnctl/engine/cpu/normalization.py): same names and arguments.

Written for clarity, not speed, in float64; only the tests import this module.
"""

import numpy as np


def batch_norm_forward(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y):
    x = x.astype(np.float64)
    batch_mean = x.mean(axis=0)
    variance = ((x - batch_mean) ** 2).mean(axis=0)  # biased, as Keras
    mean[...] = batch_mean
    inv_std[...] = 1 / np.sqrt(variance + epsilon)
    y[...] = (x - batch_mean) * inv_std * gamma + beta
    moving_mean[...] = moving_mean * momentum + batch_mean * (1 - momentum)
    moving_variance[...] = moving_variance * momentum + variance * (1 - momentum)


def batch_norm_forward_split(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y,
                             parts):
    batch_norm_forward(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y)


def batch_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx):
    dy = dy.astype(np.float64)
    xhat = (x - mean) * inv_std
    dbeta[...] = dy.sum(axis=0)
    dgamma[...] = (dy * xhat).sum(axis=0)
    if input_grad:
        rows = x.shape[0]
        dx[...] = gamma * inv_std * (dy - dy.sum(axis=0) / rows - xhat * (dy * xhat).sum(axis=0) / rows)


def batch_norm_backward_split(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx, parts):
    batch_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx)


def batch_norm_inference(x, gamma, beta, moving_mean, moving_variance, epsilon, y):
    y[...] = (x.astype(np.float64) - moving_mean) / np.sqrt(moving_variance.astype(np.float64) + epsilon) * gamma + beta


def batch_norm_inference_backward(dy, gamma, moving_variance, epsilon, dx):
    dx[...] = dy.astype(np.float64) * gamma / np.sqrt(moving_variance.astype(np.float64) + epsilon)


def layer_norm_forward(x, gamma, beta, epsilon, mean, inv_std, y):
    x = x.astype(np.float64)
    row_mean = x.mean(axis=1)
    variance = ((x - row_mean[:, None]) ** 2).mean(axis=1)
    mean[...] = row_mean
    inv_std[...] = 1 / np.sqrt(variance + epsilon)
    y[...] = (x - row_mean[:, None]) * inv_std[:, None] * gamma + beta


def layer_norm_forward_split(x, gamma, beta, epsilon, mean, inv_std, y, parts):
    layer_norm_forward(x, gamma, beta, epsilon, mean, inv_std, y)


def layer_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx):
    dy = dy.astype(np.float64)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    dbeta[...] = dy.sum(axis=0)
    dgamma[...] = (dy * xhat).sum(axis=0)
    if input_grad:
        g = dy * gamma
        dx[...] = inv_std[:, None] * (g - g.mean(axis=1, keepdims=True)
                                      - xhat * (g * xhat).mean(axis=1, keepdims=True))


def layer_norm_backward_split(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx, parts):
    layer_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx)
