"""A training step recorded once into a CUDA graph and launched again for each later batch of the same size: one
driver call a step instead of a few dozen kernel launches, each of which costs more host time than its work
takes on the GPU (nnctl/nn/cudagraph.py runs the steps).

A graph replays its launches with the arguments they were recorded with, so a step that is replayed must launch
the same kernels with the same arguments every time. What changes from step to step lives on the device
instead, in `state` (the step number), read by the three kernels here: `next_rows` (the batch's row numbers
from the epoch's order), `place_rows` (the outputs the metrics read, to their rows of the epoch's outputs) and
`record_step` (the step's losses to their column, then the step number on by one; `next_step` only the latter,
for inference); the optimizer reads its step size for the step from a table (optim.optimizer_step_at).

`record(run)` calls run() with every launch going to a recording stream (launch.STREAM) instead of being
executed, and returns the graph; its `launch()` runs the recorded work on the default stream, in order with the
launches around it. Recording needs cuda.core (installed with numba-cuda) and a GPU; the simulator has none.
"""

from __future__ import annotations

from numba import cuda

from nnctl.engine.cuda.launch import GENERATION, KERNEL, STREAM, cells, grid1, grid2, on


@cuda.jit(**KERNEL)
def _next_rows(order, state, batch, rows):
    i = cuda.grid(1)
    if i < rows.shape[0]:
        rows[i] = order[state[0] * batch + i]


def next_rows(order, state, batch, rows) -> None:
    """rows[i] = order[state[0]·batch + i]: the row numbers of step state[0]'s batch."""
    _next_rows[on(*grid1(rows.shape[0]))](order, state, batch, rows)


@cuda.jit(**KERNEL)
def _place_rows(src, dst, state, batch, first_row):
    j, row0, row_step = cells()
    if j < src.shape[1]:
        for i in range(row0, src.shape[0], row_step):
            dst[state[0] * batch - first_row + i, j] = src[i, j]


def place_rows(src, dst, state, batch, first_row) -> None:
    """dst[state[0]·batch − first_row + i] = src[i] for each row of src (m, width)."""
    _place_rows[on(*grid2(*src.shape))](src, dst, state, batch, first_row)


@cuda.jit(**KERNEL)
def _record_step(values, table, state):
    if cuda.grid(1) == 0:
        step = state[0]
        for r in range(values.shape[0]):
            table[r, step] = values[r]
            values[r] = 0.0
        state[0] = step + 1


def record_step(values, table, state) -> None:
    """table[r, state[0]] = values[r] for each r, values cleared for the next step, and state[0] += 1: the
    step's last launch."""
    _record_step[on(1, 1)](values, table, state)


@cuda.jit(**KERNEL)
def _next_step(state):
    if cuda.grid(1) == 0:
        state[0] += 1


def next_step(state) -> None:
    """state[0] += 1: an inference step's last launch."""
    _next_step[on(1, 1)](state)


class Graph:
    """A recorded step (cuda.core's Graph), launched on the default stream."""

    def __init__(self, graph, generation: int):
        from cuda.core import Stream

        # The default stream as numba-cuda launches on it (handle 0), in every cuda.core it supports.
        self.graph, self.generation, self.stream = graph, generation, Stream.from_handle(0)

    def valid(self) -> bool:
        """False once a scratch buffer it reads was replaced (its address is in the graph)."""
        return self.generation == GENERATION[0]

    def launch(self) -> None:
        self.graph.launch(self.stream)


def record(run) -> Graph | None:
    """The graph of run()'s launches (none of them executed), or None when run() allocated a scratch buffer
    (the graph would hold an address from before). An error from the driver (a call not allowed while
    recording) propagates."""
    from cuda.core import Device

    device = Device()
    device.set_current()
    builder = device.create_stream().create_graph_builder()
    generation = GENERATION[0]
    with cuda.defer_cleanup():  # no memory freed while recording
        builder.begin_building("thread_local")
        STREAM[0] = builder.stream
        try:
            run()
        except BaseException:  # the error run() raised, not the one ending a broken recording would
            STREAM[0] = 0
            try:
                builder.end_building()
            except Exception:
                pass
            raise
        STREAM[0] = 0
        graph = builder.end_building().complete()
    if generation != GENERATION[0]:
        graph.close()
        return None
    return Graph(graph, generation)


KERNELS = ("next_rows", "place_rows", "record_step", "next_step")
