"""Training steps replayed as a CUDA graph (nn/cudagraph.py, nnctl/engine/cuda/graphs.py), under the simulator, which
cannot record graphs: a stand-in recorder notes a full step's launches without running them, and each "replay" runs
the step again, asserting that it launches the very kernels with the very arguments (the same device buffers, shapes
and scalars) that were recorded — what a replayed graph would launch — and that nothing inside it copies between
host and device, allocates device memory or hands a kernel a host array. The runs give the bytes of the
launch-by-launch steps (losses, weights, optimizer slots, predictions) for convolutions, normalization, recurrent
layers, masks, embeddings, CSR input, dropout of each kind (its draws numbered on the device), regularizers,
clipping, several outputs and each optimizer family; the models that cannot replay are told apart; and a recorder
that fails leaves a warning and the launch-by-launch steps. Run by tests/engine/test_cuda_sim.py (on a GPU,
NNCTL_CUDA_TESTS=gpu, the graphs are real and the runs agree to float32 rounding)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from nnctl.engine.cuda import launch
from nnctl.nn import cudafused, cudagraph
from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import (LSTM, Bidirectional, Conv1D, Conv2D, Dense, Dropout, Flatten, Maximum, Minimum,
                               SimpleRNN, SpatialDropout2D)
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim.agree import assert_same_runs, same
from tests.engine.cuda_sim.test_cuda_outputs import GRAPHS
from tests.engine.cuda_sim.test_cuda_tape import MeanFourth
from tests.engine.cuda_sim.test_cuda_training import CASES, IMAGES, SEQUENCES, X, X_SPARSE

# Dropout of each kind: its draws numbered by the step number on the device.
DROPPING = {"dropout-adam": (X, lambda x: x[:, :1] - x[:, 1:2],
                             lambda: [Dense(6, activation="relu"), Dropout(0.5), Dense(1)], "adam", "mse"),
            "spatial-2d-rmsprop": (IMAGES, lambda x: x[:, 0, 0, :1],
                                   lambda: [Conv2D(3, 2), SpatialDropout2D(0.4), Flatten(), Dense(1)], "rmsprop",
                                   "mse"),
            "bidirectional-lstm-both-dropouts": (SEQUENCES, lambda x: x[:, -1, :1],
                                                 lambda: [Conv1D(3, 1), Bidirectional(LSTM(2, dropout=0.3,
                                                                                           recurrent_dropout=0.3)),
                                                          Dense(1)], "adam", "mse")}

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
REPLAYED = ["dense-mse-rmsprop-l2", "csr-bce-adam", "softmax-sparse-cce-sgd-clipnorm", "unfused-huber-adagrad",
            "convnet-maxpool-softmax", "conv-batchnorm-frozen-dense-layernorm", "embedding-lstm-bce-adam",
            "gru-sequences-bias-and-not", "masked-bidirectional-and-backwards-lstm", *DROPPING]


def _identity(arg):
    """What a recorded launch holds of an argument: an array's device address, shape, strides and type; a
    scalar's type and value; a tuple's items."""
    array = getattr(arg, "_ary", arg)
    if isinstance(array, np.ndarray):
        return ("A", array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)
    if isinstance(arg, tuple):
        return ("T", tuple(_identity(item) for item in arg))
    return ("S", type(arg).__name__, repr(arg))


class _Launches:
    """Every kernel launch while active, kept in `seen`, and every host ↔ device copy or device allocation, in
    `transfers`; `run=False` skips the kernels (recording a graph runs nothing)."""

    def __init__(self, monkeypatch, run: bool):
        from numba import cuda
        from numba.cuda.simulator import kernel as sim
        from numba.cuda.simulator.cudadrv import devicearray

        self.seen, self.transfers, self.streams = [], [], []
        launch_kernel, configure = sim.FakeCUDAKernel.__call__, sim.FakeCUDAKernel.__getitem__

        def configured(kernel, configuration):  # (the simulator ignores the stream a launch is configured with)
            kernel.nnctl_stream = configuration[2] if len(configuration) > 2 else 0
            return configure(kernel, configuration)

        def launched(kernel, *args):
            if kernel._device or sim._kernel_context:
                return launch_kernel(kernel, *args)
            self.seen.append((kernel.fn.__module__, kernel.fn.__name__, tuple(_identity(a) for a in args)))
            self.streams.append((kernel.fn.__name__, getattr(kernel, "nnctl_stream", 0)))
            self.transfers += [f"a host array given to {kernel.fn.__name__}" for a in args if isinstance(a, np.ndarray)]
            return launch_kernel(kernel, *args) if run else None

        def noted(name, original):
            def call(*args, **kwargs):
                self.transfers.append(name)
                return original(*args, **kwargs)
            return call

        monkeypatch.setattr(sim.FakeCUDAKernel, "__call__", launched)
        monkeypatch.setattr(sim.FakeCUDAKernel, "__getitem__", configured)
        for name in ("copy_to_device", "copy_to_host"):
            monkeypatch.setattr(devicearray.FakeCUDAArray, name, noted(name, getattr(devicearray.FakeCUDAArray, name)))
        for name in ("device_array", "device_array_like", "to_device", "pinned_array"):
            monkeypatch.setattr(cuda, name, noted(name, getattr(cuda, name)))


class _StandInGraph:
    def __init__(self, run, recorded):
        self.run, self.recorded, self.generation, self.launches = run, recorded, launch.GENERATION[0], 0

    def valid(self):
        return self.generation == launch.GENERATION[0]

    def launch(self):
        with pytest.MonkeyPatch.context() as patch:
            replay = _Launches(patch, run=True)
            self.run()
        assert replay.seen == self.recorded, "a replayed step launched other kernels or arguments than recorded"
        assert not replay.transfers, f"a replayed step copied or allocated: {replay.transfers}"
        self.launches += 1


_RECORDING = type("RecordingStream", (), {"handle": 99})()  # the stand-in recorder's stream


@pytest.fixture
def graphs(monkeypatch):
    """The stand-in recorder (its graphs, in order, in the list returned)."""
    made = []

    def record(run):
        with pytest.MonkeyPatch.context() as patch:
            recording = _Launches(patch, run=False)
            launch.STREAM[0] = _RECORDING  # as graphs.record does
            try:
                run()
            finally:
                launch.STREAM[0] = 0
        if not recording.seen or recording.transfers:  # (pytest.fail: not an error the runner would take as refusal)
            pytest.fail(f"a recorded step launched nothing or copied or allocated: {recording.transfers}")
        elsewhere = [name for name, stream in recording.streams if stream is not _RECORDING]
        if elsewhere:  # on a GPU these would run at once, outside the graph
            pytest.fail(f"launched while recording but not on the recording stream: {elsewhere}")
        made.append(_StandInGraph(run, recording.seen))
        return made[-1]

    monkeypatch.setattr(cudagraph, "recorder", lambda: record)
    monkeypatch.setattr(cudafused, "ENABLED", False)  # (the Dense models' own one-launch path stays apart)
    return made


def _fit(case, replay, monkeypatch, epochs=2):
    x, target, layers, optimizer, loss = {**CASES, **DROPPING}[case]
    monkeypatch.setattr(cudagraph, "ENABLED", replay)
    model = Sequential(layers(), input_shape=x.shape[1:], seed=3, device="cuda")
    model.compile(optimizer=optimizer, loss=loss)
    xs = np.concatenate([x, x[:5]])  # batches of 8: two or more full steps, then a short one
    y = target(xs)
    history = model.fit(xs, y, epochs=epochs, batch_size=8, validation_data=(x, target(x)))
    path = next(iter(model._cuda_paths.values()))
    assert (path.replayed is not None) is replay
    return history, model.get_weights(), [s.copy() for s in model.optimizer.slots], model.predict(xs, batch_size=8)


def _replays(rows: int) -> list:
    """The launches of the graph a runner call over `rows` rows in batches of 8 records ([] when it has fewer
    than two full batches: no graph)."""
    return [rows // 8 - 1] if rows // 8 >= 2 else []


@pytest.mark.skipif(not SIMULATED, reason="the stand-in recorder is the simulator's")
@pytest.mark.parametrize("case", REPLAYED)
def test_replayed_steps_launch_what_they_recorded_and_give_the_step_by_step_bytes(case, graphs, monkeypatch):
    replayed = _fit(case, True, monkeypatch)
    stepped = _fit(case, False, monkeypatch)
    assert_same_runs(replayed, stepped)
    n = len({**CASES, **DROPPING}[case][0])
    # A graph a runner call — each epoch's training and validation, then predict — recorded at the second full
    # batch and launched for it and each full batch after.
    assert [graph.launches for graph in graphs] == 2 * (_replays(n + 5) + _replays(n)) + _replays(n + 5)


def _maximum_and_minimum(device):
    """Two inputs, their Maximum and Minimum (which input won each value: reset a step by a kernel), a layer used
    twice (its uses' gradients added: kept aside and zeroed by kernels), an L1 penalty, two outputs."""
    a, b = Input((3,), name="a"), Input((3,), name="b")
    shared = Dense(4, activation="tanh")
    left, right = shared(a), Dense(4, kernel_regularizer={"type": "l1", "l1": 0.01})(shared(b))
    high, low = Dense(1, name="high")(Maximum()([left, right])), Dense(1, name="low")(Minimum()([left, right]))
    model = Model([a, b], [high, low], seed=3, device=device)
    x = {"a": X[:16, :3], "b": X[:16, 3:]}
    y = {"high": X[:16, :1], "low": X[:16, 3:4]}
    return model, x, y, dict(optimizer="rmsprop", loss="mse", loss_weights={"high": 1.0, "low": 0.5})


@pytest.mark.skipif(not SIMULATED, reason="the stand-in recorder is the simulator's")
@pytest.mark.parametrize("name", [*GRAPHS, "maximum-and-minimum"])
def test_several_inputs_and_outputs_replay_to_the_same_bytes(name, graphs, monkeypatch):
    """Each output's weighted loss and the penalties go to their own rows of the step's table."""
    runs = []
    for replay in (True, False):
        monkeypatch.setattr(cudagraph, "ENABLED", replay)
        model, x, y, compiled = {**GRAPHS, "maximum-and-minimum": _maximum_and_minimum}[name]("cuda")
        model.compile(**compiled)
        history = model.fit(x, y, epochs=1, batch_size=4)
        runs.append((history, model.get_weights(), [s.copy() for s in model.optimizer.slots],
                     model.predict(x, batch_size=4)))
    for key in runs[1][0]:
        if key != "epoch_time":
            same(runs[0][0][key], runs[1][0][key], key)
    for name_ in runs[1][1]:
        same(runs[0][1][name_], runs[1][1][name_], name_)
    for mine, theirs in zip(runs[0][3] if isinstance(runs[0][3], list) else [runs[0][3]],
                            runs[1][3] if isinstance(runs[1][3], list) else [runs[1][3]]):
        same(mine, theirs, "predictions")
    assert [graph.launches for graph in graphs] == [3, 3]  # 16 rows, four full batches: training, then predict


def _path(model, x, y):
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, batch_size=8)
    return next(iter(model._cuda_paths.values()))


def test_what_decides_on_the_host_each_step_runs_launch_by_launch(monkeypatch):
    monkeypatch.setattr(cudafused, "ENABLED", False)
    y = X[:, :1]
    monkeypatch.setattr(cudagraph, "ENABLED", True)  # (whatever NNCTL_CUDA_GRAPHS says)
    assert _path(Sequential([Dense(3), Dense(1)], input_shape=(6,), seed=1, device="cuda"), X, y).replayed
    dropout = Sequential([Dense(3), Dropout(0.5), Dense(1)], input_shape=(6,), seed=1, device="cuda")
    assert _path(dropout, X, y).replayed is not None  # (its draws numbered on the device)
    recurrent = Sequential([SimpleRNN(2, recurrent_dropout=0.2), Dense(1)], input_shape=(3, 2), seed=1,
                           device="cuda")
    assert _path(recurrent, X.reshape(24, 3, 2), y).replayed is not None
    sparse = Sequential([Dense(3), Dense(1)], input_shape=(40,), seed=1, device="cuda")
    assert _path(sparse, X_SPARSE, y).replayed is not None  # (read as CSR: its scratch sized by the dataset)
    a, b = Input((3,), name="a"), Input((3,), name="b")
    shared = Dense(2)
    twice = Model([a, b], Dense(1)(Maximum()([shared(a), shared(b)])), seed=1, device="cuda")
    assert _path(twice, {"a": X[:, :3], "b": X[:, 3:]}, y).replayed is not None  # (shared: copies by kernels)
    users_loss = Sequential([Dense(3), Dense(1)], input_shape=(6,), seed=1, device="cuda")
    users_loss.compile(optimizer="adam", loss=MeanFourth())
    users_loss.fit(X, y, epochs=1, batch_size=8)
    assert next(iter(users_loss._cuda_paths.values())).replayed is None  # (its tape's ops decide on the host)
    monkeypatch.setattr(cudagraph, "ENABLED", False)
    assert _path(Sequential([Dense(3), Dense(1)], input_shape=(6,), seed=1, device="cuda"), X, y).replayed is None


@pytest.mark.skipif(not SIMULATED, reason="the stand-in recorder is the simulator's")
def test_a_recorder_that_fails_leaves_a_warning_and_the_step_by_step_bytes(monkeypatch):
    monkeypatch.setattr(cudafused, "ENABLED", False)

    def refuse(run):
        raise RuntimeError("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED")

    monkeypatch.setattr(cudagraph, "recorder", lambda: None if cudagraph._FAILED[0] else refuse)
    monkeypatch.setattr(cudagraph, "_FAILED", [None])
    with pytest.warns(RuntimeWarning, match="recording them as a CUDA graph failed .*STREAM_CAPTURE_UNSUPPORTED"):
        failed = _fit("convnet-maxpool-softmax", True, monkeypatch)
    assert cudagraph._FAILED[0]
    assert_same_runs(failed, _fit("convnet-maxpool-softmax", False, monkeypatch))


@pytest.mark.skipif(SIMULATED, reason="recording a real graph needs a real GPU (NNCTL_CUDA_TESTS=gpu)")
@pytest.mark.parametrize("case", ["convnet-maxpool-softmax", "embedding-lstm-bce-adam"])
def test_real_graphs_train_as_the_launches_do(case, monkeypatch):
    monkeypatch.setattr(cudagraph, "_FAILED", [None])
    replayed = _fit(case, True, monkeypatch)
    assert cudagraph._FAILED[0] is None
    assert_same_runs(replayed, _fit(case, False, monkeypatch))


class _Recording:
    """Stands in for cuda.core (no GPU here): what `graphs.record` asks of its device, stream, graph builder and
    graph, in order."""

    def __init__(self):
        self.events = []
        self.Stream = type("Stream", (), {"from_handle": staticmethod(lambda handle: f"stream {handle}")})
        recording = self

        class Graph:
            def launch(self, stream):
                recording.events.append(("launch", stream))

            def close(self):
                recording.events.append("close")

        class Builder:
            stream = "recording stream"

            def begin_building(self, mode):
                recording.events.append(("begin", mode))
                return self

            def end_building(self):
                recording.events.append("end")
                return self

            def complete(self):
                recording.events.append("complete")
                return Graph()

        class Device:
            def set_current(self):
                recording.events.append("current")

            def create_stream(self):
                return type("Stream", (), {"create_graph_builder": lambda stream: Builder()})()

        self.Device = Device


def test_recording_sends_the_launches_to_its_stream_and_hands_back_the_graph(monkeypatch):
    from nnctl.engine.cuda import graphs

    core = _Recording()
    monkeypatch.setitem(sys.modules, "cuda.core", core)
    graph = graphs.record(lambda: core.events.append(("run on", launch.STREAM[0])))
    assert core.events == ["current", ("begin", "thread_local"), ("run on", "recording stream"), "end", "complete"]
    assert launch.STREAM[0] == 0 and graph.valid()
    graph.launch()
    assert core.events[-1] == ("launch", "stream 0")  # the default stream
    launch.scratch("a buffer no step had before", 3)  # (a scratch buffer replaced: the graph holds its old address)
    assert not graph.valid()

    core.events.clear()
    assert graphs.record(lambda: launch.scratch("another new buffer", 5)) is None  # allocated while recording
    assert core.events[-2:] == ["complete", "close"] and launch.STREAM[0] == 0

    def fails():
        raise ValueError("a kernel refused")

    core.events.clear()
    with pytest.raises(ValueError, match="a kernel refused"):
        graphs.record(fails)
    assert core.events[-1] == "end" and launch.STREAM[0] == 0
