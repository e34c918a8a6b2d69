"""The recurrent kernels (nnctl/engine/cpu/recurrent.py) against their NumPy oracles
(nnctl/engine/reference_recurrent.py), their backward against central differences, the float32 activations
against float64, and the three cells against torch.nn.RNN / LSTM / GRU."""

import numpy as np
import pytest
from numba import njit

from nnctl.engine import reference_recurrent as reference
from nnctl.engine.cpu import recurrent
from nnctl.engine.cpu.recurrent import RECURRENT_ACTIVATIONS as CODES

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# (n, t, u): a group of GROUP samples and the ones after it, two samples alone; units below, at and past one
# 16-lane block; a sequence of one step
SHAPES = [(5, 5, 37), (2, 1, 16), (6, 3, 5)]
# (act, ract) pairs: the defaults, then the piecewise-linear ones
ACTIVATION_PAIRS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("linear", "tanh")]


class Sequences:
    """Random inputs of one cell's kernels, and the kernel calls on a module (the kernels or the oracle)."""

    def __init__(self, cell, shape, dtype, masked, dropout, seed=0):
        n, t, u = shape
        g = GATES[cell]
        rng = np.random.default_rng(seed)
        self.cell, self.shape, self.dtype = cell, shape, dtype
        # Inputs of 3 features: one array, or one per gate (the layer's dropped inputs with recurrent dropout).
        groups = g if dropout and g > 1 else 1
        self.x = rng.standard_normal((groups, n, t, 3)).astype(dtype)
        self.W = (rng.standard_normal((3, g * u)) / np.sqrt(3)).astype(dtype)
        self.bias = (0.3 * rng.standard_normal(g * u)).astype(dtype)
        self.U = (rng.standard_normal((u, g * u)) / np.sqrt(u)).astype(dtype)
        self.rbias = (0.3 * rng.standard_normal(g * u)).astype(dtype)
        self.h0 = (0.5 * rng.standard_normal((n, u))).astype(dtype)
        self.c0 = (0.5 * rng.standard_normal((n, u))).astype(dtype)
        self.mask = (rng.random((n, t)) < 0.6 if masked else np.ones((n, t), bool)).astype(np.uint8)
        if masked and t > 1:
            self.mask[0, :2] = (0, 1)  # a masked first step and a real one after it
        if masked and t > 2:
            self.mask[:, 1] = 0  # a step at which the whole batch is masked
        rate = 0.3
        self.rmask = (((rng.random((n, g * u)) >= rate) / (1 - rate)).astype(dtype) if dropout
                      else np.zeros((0, g * u), dtype))
        self.dhs = rng.standard_normal((n, t, u)).astype(dtype)
        self.dc_last = rng.standard_normal((n, u)).astype(dtype)

    def forward(self, module, act, ract, first=0, count=None, fill=0.0):
        """{name: output} of the forward kernel; every output starts as `fill`."""
        n, t, u = self.shape
        count = self.shape[0] if count is None else count
        out = {name: np.full((n, t, u), fill, self.dtype) for name in ("hs", "cs", "hu")}
        out["gates"] = np.full((n, t, GATES[self.cell] * u), fill, self.dtype)
        head = (self.x, self.W, self.bias, self.U)
        if self.cell == "simple_rnn":
            module.simple_rnn_forward(*head, self.h0, self.mask, self.rmask, act, first, count, out["hs"])
        elif self.cell == "lstm":
            module.lstm_forward(*head, self.h0, self.c0, self.mask, self.rmask, act, ract, first, count,
                                out["gates"], out["hs"], out["cs"])
        else:
            module.gru_forward(*head, self.rbias, self.h0, self.mask, self.rmask, act, ract, first, count,
                               out["gates"], out["hs"], out["hu"])
        return out

    def backward(self, module, act, ract, fwd, first=0, count=None, fill=0.0):
        """{name: gradient} of the backward kernel, given the forward's outputs; "dpre" is the LSTM and GRU
        kernels' gates argument (a copy of the forward's), which they overwrite."""
        n, t, u = self.shape
        g, count = GATES[self.cell], self.shape[0] if count is None else count
        UT = np.ascontiguousarray(self.U.T)
        out = {"dpre": np.full((n, t, g * u), fill, self.dtype) if self.cell == "simple_rnn" else fwd["gates"].copy(),
               "drec": np.full((n, t, u), fill, self.dtype),
               "dh0": np.full((n, u), fill, self.dtype), "dc0": np.full((n, u), fill, self.dtype)}
        if self.cell == "simple_rnn":
            module.simple_rnn_backward(self.dhs, fwd["hs"], UT, self.mask, self.rmask, act, first, count,
                                       out["dpre"], out["dh0"])
        elif self.cell == "lstm":
            module.lstm_backward(self.dhs, self.dc_last, fwd["cs"], self.c0, UT, self.mask, self.rmask, act, ract,
                                 first, count, out["dpre"], out["dh0"], out["dc0"])
        else:
            module.gru_backward(self.dhs, fwd["hs"], fwd["hu"], self.h0, UT, self.mask, self.rmask, act, ract,
                                first, count, out["dpre"], out["drec"], out["dh0"])
        return out


# What each cell's forward and backward write (gates and hu only at real steps: a masked step's row is
# unspecified).
FORWARD_OUTPUTS = {"simple_rnn": ("hs",), "lstm": ("hs", "cs", "gates"), "gru": ("hs", "gates", "hu")}
BACKWARD_OUTPUTS = {"simple_rnn": ("dpre", "dh0"), "lstm": ("dpre", "dh0", "dc0"), "gru": ("dpre", "drec", "dh0")}
PER_STEP_ONLY_AT_REAL_STEPS = ("gates", "hu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked, dropout", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["plain", "masked", "rdropout", "masked-rdropout"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"n{n}t{t}u{u}" for n, t, u in SHAPES])
@pytest.mark.parametrize("cell", list(GATES))
def test_kernels_match_the_oracle(cell, shape, masked, dropout, dtype):
    # float32 rounding grows with the values (a linear activation lets the states grow): absolute tolerance
    # relative to each array's largest entry.
    eps = 2e-6 if dtype == np.float32 else 1e-13

    def close(got, want, message):
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        np.testing.assert_allclose(got, want, rtol=10 * eps, atol=10 * eps * scale, err_msg=message)

    for pair in ACTIVATION_PAIRS:
        act, ract = CODES[pair[0]], CODES[pair[1]]
        seqs = Sequences(cell, shape, dtype, masked, dropout)
        got, want = seqs.forward(recurrent, act, ract), seqs.forward(reference, act, ract)
        real = seqs.mask.astype(bool)
        for name in FORWARD_OUTPUTS[cell]:
            keep = real if name in PER_STEP_ONLY_AT_REAL_STEPS else slice(None)
            close(got[name][keep], want[name][keep], f"{pair} {name}")
        got_grads = seqs.backward(recurrent, act, ract, want)
        want_grads = seqs.backward(reference, act, ract, want)
        for name in BACKWARD_OUTPUTS[cell]:
            close(got_grads[name], want_grads[name], f"{pair} {name}")
        assert (got_grads["dpre"][~real] == 0).all(), "a masked step's pre-activation gradient must be 0"


@pytest.mark.parametrize("cell", list(GATES))
def test_kernels_write_only_their_samples(cell):
    """first, count: a part of the batch gives the same rows as the whole batch, and no other row is touched."""
    seqs = Sequences(cell, (6, 4, 20), np.float32, masked=True, dropout=True, seed=3)
    act, ract = CODES["tanh"], CODES["sigmoid"]
    whole = seqs.forward(recurrent, act, ract)
    part = seqs.forward(recurrent, act, ract, first=1, count=4, fill=np.nan)  # a group of 4 from sample 1
    real = seqs.mask.astype(bool)
    for name in FORWARD_OUTPUTS[cell]:
        keep = real[1:5] if name in PER_STEP_ONLY_AT_REAL_STEPS else slice(None)
        np.testing.assert_array_equal(part[name][1:5][keep], whole[name][1:5][keep])
        assert np.isnan(part[name][[0, 5]]).all(), f"{name}: rows outside [first, first + count) written"
    whole_grads = seqs.backward(recurrent, act, ract, whole)
    part_grads = seqs.backward(recurrent, act, ract, whole, first=1, count=4, fill=np.nan)
    for name in BACKWARD_OUTPUTS[cell]:
        np.testing.assert_array_equal(part_grads[name][1:5], whole_grads[name][1:5])
        in_place = name == "dpre" and cell != "simple_rnn"  # the gates the backward overwrites
        untouched = whole["gates"] if in_place else np.full_like(part_grads[name], np.nan)
        np.testing.assert_array_equal(part_grads[name][[0, 5]], untouched[[0, 5]],
                                      err_msg=f"{name}: rows outside [first, first + count) written")


@pytest.mark.parametrize("dropout", [False, True])
def test_recurrent_inputs_match_the_oracle(dropout):
    rng = np.random.default_rng(4)
    n, t, u, g = 4, 3, 7, 4
    hs, h0 = rng.standard_normal((n, t, u)).astype(np.float32), rng.standard_normal((n, u)).astype(np.float32)
    rmask = rng.random((n, g * u)).astype(np.float32) if dropout else np.zeros((0, g * u), np.float32)
    width = g * u if dropout else u
    got, want = np.full((n, t, width), np.nan, np.float32), np.full((n, t, width), np.nan, np.float32)
    recurrent.recurrent_inputs(hs, h0, rmask, 1, 2, got)
    reference.recurrent_inputs(hs, h0, rmask, 1, 2, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[1, 1, :u], hs[1, 0] * (rmask[1, :u] if dropout else 1))


@pytest.mark.parametrize("cell", list(GATES))
def test_a_last_step_gradient_alone_equals_a_zero_filled_one(cell):
    """dhs of shape (n, 1, u) (return_sequences off) gives the bytes of the (n, t, u) array that is zero before
    the last step."""
    seqs = Sequences(cell, (5, 6, 19), np.float32, masked=True, dropout=False, seed=5)
    act, ract = CODES["tanh"], CODES["sigmoid"]
    fwd = seqs.forward(recurrent, act, ract)
    last = seqs.dhs[:, -1:].copy()
    seqs.dhs = np.concatenate([np.zeros_like(seqs.dhs[:, :-1]), last], axis=1)
    full = seqs.backward(recurrent, act, ract, fwd)
    seqs.dhs = last
    alone = seqs.backward(recurrent, act, ract, fwd)
    oracle = seqs.backward(reference, act, ract, fwd)
    for name in BACKWARD_OUTPUTS[cell]:
        np.testing.assert_array_equal(alone[name], full[name], err_msg=name)
        np.testing.assert_allclose(alone[name], oracle[name], rtol=2e-5, atol=2e-5, err_msg=name)


def test_two_threads_on_two_halves_give_the_whole_batch_bytes():
    """The layer's split: fixed parts of the batch on threads side by side (the kernels release the GIL)."""
    import threading

    seqs = Sequences("lstm", (10, 6, 21), np.float32, masked=True, dropout=True, seed=8)
    act, ract = CODES["tanh"], CODES["sigmoid"]
    whole = seqs.forward(recurrent, act, ract)
    gates, hs, cs = np.zeros_like(whole["gates"]), np.zeros_like(whole["hs"]), np.zeros_like(whole["cs"])
    parts = [threading.Thread(target=recurrent.lstm_forward, args=(
        seqs.x, seqs.W, seqs.bias, seqs.U, seqs.h0, seqs.c0, seqs.mask, seqs.rmask, act, ract, first, count, gates,
        hs, cs))
        for first, count in ((0, 4), (4, 6))]
    for thread in parts:
        thread.start()
    for thread in parts:
        thread.join()
    np.testing.assert_array_equal(hs, whole["hs"])
    np.testing.assert_array_equal(cs, whole["cs"])


def test_gru_writes_the_whole_recurrent_gradient_or_its_candidate_block():
    """drec (n, t, 3u) = [dpre_z, dpre_r, e·r]; drec (n, t, u) holds e·r alone, the same bytes."""
    seqs = Sequences("gru", (5, 4, 21), np.float32, masked=True, dropout=True, seed=9)
    act, ract = CODES["tanh"], CODES["sigmoid"]
    fwd = seqs.forward(recurrent, act, ract)
    narrow = seqs.backward(recurrent, act, ract, fwd)
    n, t, u = seqs.shape
    dpre, drec, dh0 = fwd["gates"].copy(), np.full((n, t, 3 * u), np.nan, np.float32), np.zeros((n, u), np.float32)
    recurrent.gru_backward(seqs.dhs, fwd["hs"], fwd["hu"], seqs.h0, np.ascontiguousarray(seqs.U.T), seqs.mask,
                           seqs.rmask, act, ract, 0, n, dpre, drec, dh0)
    np.testing.assert_array_equal(dpre, narrow["dpre"])
    np.testing.assert_array_equal(dh0, narrow["dh0"])
    np.testing.assert_array_equal(drec[:, :, 2 * u:], narrow["drec"])
    np.testing.assert_array_equal(drec[:, :, :2 * u], dpre[:, :, :2 * u])
    want = np.zeros_like(drec)
    reference.gru_backward(seqs.dhs, fwd["hs"], fwd["hu"], seqs.h0, np.ascontiguousarray(seqs.U.T), seqs.mask,
                           seqs.rmask, act, ract, 0, n, fwd["gates"].copy(), want, np.zeros((n, u)))
    np.testing.assert_allclose(drec, want, rtol=2e-5, atol=2e-5)


def _weight_gradients(seqs, grads):
    """dU (and the recurrent-bias gradient) as the layer forms them from the backward's per-step gradients: one
    GEMM per gate over all (sample, step) rows."""
    n, t, u = seqs.shape
    g = GATES[seqs.cell]
    width = u if seqs.rmask.shape[0] == 0 else g * u
    inputs = np.zeros((n, t, width))
    recurrent.recurrent_inputs(seqs.hs, seqs.h0, seqs.rmask, 0, n, inputs)
    inputs = inputs.reshape(n * t, width)
    d = grads["dpre"].reshape(n * t, g * u)
    if seqs.cell == "gru":  # z and r: dpre; h̃: drec
        d = np.concatenate([d[:, :2 * u], grads["drec"].reshape(n * t, u)], axis=1)
    if width == u:
        return inputs.T @ d, d.sum(axis=0)
    return np.concatenate([inputs[:, k * u:(k + 1) * u].T @ d[:, k * u:(k + 1) * u] for k in range(g)],
                          axis=1), d.sum(axis=0)


def _input_gradients(seqs, dpre):
    """{x, W, bias: gradient} from dpre, as the layer forms them (gate k's columns from x[k] when each gate
    reads its own inputs)."""
    groups, width = len(seqs.x), seqs.W.shape[1] // len(seqs.x)
    dx, dW = np.zeros_like(seqs.x), np.zeros_like(seqs.W)
    for k in range(groups):
        block = slice(k * width, (k + 1) * width)
        dx[k] = dpre[..., block] @ seqs.W[:, block].T
        dW[:, block] = seqs.x[k].reshape(-1, seqs.x.shape[-1]).T @ dpre[..., block].reshape(-1, width)
    return {"x": dx, "W": dW, "bias": dpre.sum(axis=(0, 1))}


@pytest.mark.parametrize("masked, dropout", [(False, False), (True, True)], ids=["plain", "masked-rdropout"])
@pytest.mark.parametrize("pair", ACTIVATION_PAIRS[::2], ids=lambda p: "-".join(p))
@pytest.mark.parametrize("cell", list(GATES))
def test_backward_matches_central_differences(cell, pair, masked, dropout):
    """float64: loss = Σ w·hs (+ Σ v·c_last for the LSTM); dx, dW, db (from the backward's dpre), dU, dh0
    (dc0, d rbias) against (loss(p + ε) − loss(p − ε)) / 2ε for every parameter entry."""
    seqs = Sequences(cell, (5, 4, 5), np.float64, masked, dropout, seed=7)
    act, ract = CODES[pair[0]], CODES[pair[1]]

    def loss():
        out = seqs.forward(recurrent, act, ract)
        total = (seqs.dhs * out["hs"]).sum()
        if cell == "lstm":
            total += (seqs.dc_last * out["cs"][:, -1]).sum()
        return total

    fwd = seqs.forward(recurrent, act, ract)
    seqs.hs = fwd["hs"]
    grads = seqs.backward(recurrent, act, ract, fwd)
    dU, drbias = _weight_gradients(seqs, grads)
    checks = {**_input_gradients(seqs, grads["dpre"]), "U": dU, "h0": grads["dh0"]}
    if cell == "lstm":
        checks["c0"] = grads["dc0"]
    if cell == "gru":
        checks["rbias"] = drbias
    eps = 1e-6
    for name, analytic in checks.items():
        param = getattr(seqs, name)
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            keep = param[index]
            param[index] = keep + eps
            up = loss()
            param[index] = keep - eps
            numeric[index] = (up - loss()) / (2 * eps)
            param[index] = keep
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7, err_msg=name)


@njit
def _apply(function, x, out):
    for i in range(x.shape[0]):
        out[i] = function(x[i])


@pytest.mark.parametrize("name, exact", [("exp32", np.exp), ("sigmoid32", lambda x: 1 / (1 + np.exp(-x))),
                                         ("tanh32", np.tanh)])
def test_float32_activations_are_accurate(name, exact):
    """Max relative error against float64 over [−30, 30] (exp: its whole clamped range), and the tails."""
    function = getattr(recurrent, name)
    grid = np.linspace(-87 if name == "exp32" else -30, 88 if name == "exp32" else 30, 1_200_001)
    tiny = np.array([1e-30, 1e-20, 1e-10, 1e-6, 1e-3, 0.3, 0.62, 0.625, 0.63])
    x = np.concatenate([grid, tiny, -tiny]).astype(np.float32)
    out = np.empty_like(x)
    _apply(function, x, out)
    want = exact(x.astype(np.float64))
    zero = want == 0
    assert (out[zero] == 0).all()
    assert np.max(np.abs(out - want)[~zero] / np.abs(want[~zero])) < 2e-7
    tails = np.array([40, 60, 87, 88, 89, 100, 1e4, 3e38, np.inf], np.float32)
    tails = np.concatenate([tails, -tails, [np.nan]]).astype(np.float32)
    out = np.empty_like(tails)
    _apply(function, tails, out)
    assert np.isnan(out[-1]), "NaN must stay NaN"
    assert np.isfinite(out[:-1]).all()
    if name == "exp32":
        assert out[0] > 1e17 and 0 < out[len(tails) // 2] < 1e-17
    else:
        assert (out[:len(tails) // 2] == 1).all()
        low = -1 if name == "tanh32" else 0
        np.testing.assert_allclose(out[len(tails) // 2:-1], low, atol=1e-17)


# ---- PyTorch parity ------------------------------------------------------------------------------------------

def _torch_case(cell, units, seed=0):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    n, t, features, g = 4, 9, 6, GATES[cell]
    x = rng.standard_normal((n, t, features)).astype(np.float32)
    W = (rng.standard_normal((features, g * units)) * 0.4).astype(np.float32)
    U = (rng.standard_normal((units, g * units)) * 0.4).astype(np.float32)
    b = (rng.standard_normal((2, g * units)) * 0.2).astype(np.float32)  # [input bias, recurrent bias (GRU)]
    h0, c0 = (rng.standard_normal((2, n, units)) * 0.5).astype(np.float32)
    dout = rng.standard_normal((n, t, units)).astype(np.float32)
    return torch, x, W, U, b, h0, c0, dout


def _to_torch_order(w, cell, units):
    """Keras gate blocks along the last axis → torch's order (GRU z, r, h → r, z, n; the others keep theirs)."""
    if cell != "gru":
        return w
    z, r, h = np.split(w, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


@pytest.mark.parametrize("units", [6, 20])
@pytest.mark.parametrize("cell", list(GATES))
def test_cells_match_torch(cell, units):
    torch, x, W, U, b, h0, c0, dout = _torch_case(cell, units)
    n, t, features = x.shape
    g = GATES[cell]
    torch.manual_seed(0)
    module = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        features, units, batch_first=True)
    input_bias, recurrent_bias = b[0], (b[1] if cell == "gru" else np.zeros_like(b[1]))
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(_to_torch_order(W, cell, units).T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(_to_torch_order(U, cell, units).T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(_to_torch_order(input_bias, cell, units)))
        module.bias_hh_l0.copy_(torch.from_numpy(_to_torch_order(recurrent_bias, cell, units)))
    tx = torch.from_numpy(x).requires_grad_()
    th0 = torch.from_numpy(h0[None].copy()).requires_grad_()
    tc0 = torch.from_numpy(c0[None].copy()).requires_grad_()
    out, _ = module(tx, (th0, tc0) if cell == "lstm" else th0)
    (out * torch.from_numpy(dout)).sum().backward()

    # nnctl, as the layer runs it: the forward kernel projects each step and writes the gates, which the
    # backward kernel turns into dpre; then the weight gradients as GEMMs.
    mask, rmask = np.ones((n, t), np.uint8), np.zeros((0, g * units), np.float32)
    tanh, sigmoid = CODES["tanh"], CODES["sigmoid"]
    hs, cs, hu = (np.empty((n, t, units), np.float32) for _ in range(3))
    drec = np.empty((n, t, units), np.float32)
    dh0, dc0 = np.empty((n, units), np.float32), np.empty((n, units), np.float32)
    UT = np.ascontiguousarray(U.T)
    gates = np.empty((n, t, g * units), np.float32)
    head = (x[None], W, input_bias, U)
    if cell == "simple_rnn":
        dpre = gates
        recurrent.simple_rnn_forward(*head, h0, mask, rmask, tanh, 0, n, hs)
        recurrent.simple_rnn_backward(dout, hs, UT, mask, rmask, tanh, 0, n, dpre, dh0)
    elif cell == "lstm":
        dpre = gates
        recurrent.lstm_forward(*head, h0, c0, mask, rmask, tanh, sigmoid, 0, n, gates, hs, cs)
        recurrent.lstm_backward(dout, np.zeros_like(c0), cs, c0, UT, mask, rmask, tanh, sigmoid, 0, n, gates, dh0,
                                dc0)
    else:
        dpre = gates
        recurrent.gru_forward(*head, b[1], h0, mask, rmask, tanh, sigmoid, 0, n, gates, hs, hu)
        recurrent.gru_backward(dout, hs, hu, h0, UT, mask, rmask, tanh, sigmoid, 0, n, gates, drec, dh0)
    inputs = np.empty_like(hs)
    recurrent.recurrent_inputs(hs, h0, rmask, 0, n, inputs)
    flat = dpre.reshape(n * t, g * units)
    d_rec = np.concatenate([flat[:, :2 * units], drec.reshape(n * t, units)], axis=1) if cell == "gru" else flat
    ours = {
        "out": hs, "dx": (flat @ W.T).reshape(x.shape), "dh0": dh0,
        "dW": flat.T @ x.reshape(n * t, features), "dU": d_rec.T @ inputs.reshape(n * t, units),
        "db_ih": flat.sum(axis=0),
    }
    theirs = {
        "out": out, "dx": tx.grad, "dh0": th0.grad[0],
        "dW": module.weight_ih_l0.grad, "dU": module.weight_hh_l0.grad, "db_ih": module.bias_ih_l0.grad,
    }
    if cell == "gru":
        ours["db_hh"], theirs["db_hh"] = d_rec.sum(axis=0), module.bias_hh_l0.grad
    if cell == "lstm":
        ours["dc0"], theirs["dc0"] = dc0, tc0.grad[0]
    for name, value in ours.items():
        if name in ("dW", "dU", "db_ih", "db_hh"):  # gate blocks along the first axis in torch
            value = _to_torch_order(value.T, cell, units).T
        np.testing.assert_allclose(value, theirs[name].detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
