"""CPU kernels of the conv layer family (Numba `@njit`, cached); `KERNELS` names the ones the backend exports.

Each kernel documents its loop and argument shapes; its NumPy oracle is in nnctl/engine/reference_conv.py.
"""

from numba import njit

from nnctl.engine.settings import KERNEL

# nogil: nnctl/engine/convolution.py runs the chunks of one call on a small thread pool.
CONV_KERNEL = {**KERNEL, "nogil": True}

# Shared arguments. Images are channels-last 4-D, (n, height, width, channels); Conv1D passes height 1.
#   first, count: the images [first, first + count) of the batch this call works on (one chunk);
#   geometry: (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w) — kernel size, strides, dilation, the
#             zero padding before each axis, and the output size;
#   a column row is one output position of one image, (b·out_h + oy)·out_w + ox for b = image − first; its
#   entries are ordered (ki, kj, c) like a Keras kernel (kh, kw, in, out) reshaped to (kh·kw·in, out).


@njit(**CONV_KERNEL)
def im2col(x, first, count, geometry, cols):
    """Unfolds `count` images into patch rows. x: (n, h, w, c); cols: (count·out_h·out_w, kh·kw·c).

        for b, oy, ox, ki, kj: iy = oy·sh − pad_top + ki·dh; ix = ox·sw − pad_left + kj·dw
            cols[row(b, oy, ox), (ki·kw + kj)·c : +c] = x[first + b, iy, ix, :]   (zeros outside the image)
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    for b in range(count):
        image = first + b
        for oy in range(out_h):
            for ox in range(out_w):
                row = (b * out_h + oy) * out_w + ox
                for ki in range(kh):
                    iy = oy * sh - pad_top + ki * dh
                    for kj in range(kw):
                        ix = ox * sw - pad_left + kj * dw
                        base = (ki * kw + kj) * channels
                        if 0 <= iy < height and 0 <= ix < width:
                            for c in range(channels):
                                cols[row, base + c] = x[image, iy, ix, c]
                        else:
                            for c in range(channels):
                                cols[row, base + c] = 0.0


@njit(**CONV_KERNEL)
def col2im(cols, first, count, geometry, dx):
    """Folds patch-row gradients back onto `count` images (im2col's adjoint). cols: (count·out_h·out_w,
    kh·kw·c); dx: (n, h, w, c), images [first, first + count) overwritten.

        dx[first : first + count] = 0
        for b, oy, ox, ki, kj (in this order, so the sums' order is fixed):
            dx[first + b, iy, ix, :] += cols[row(b, oy, ox), (ki·kw + kj)·c : +c]    (inside the image)
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    for b in range(count):
        image = first + b
        for iy in range(height):
            for ix in range(width):
                for c in range(channels):
                    dx[image, iy, ix, c] = 0.0
        for oy in range(out_h):
            for ox in range(out_w):
                row = (b * out_h + oy) * out_w + ox
                for ki in range(kh):
                    iy = oy * sh - pad_top + ki * dh
                    if iy < 0 or iy >= height:
                        continue
                    for kj in range(kw):
                        ix = ox * sw - pad_left + kj * dw
                        if 0 <= ix < width:
                            base = (ki * kw + kj) * channels
                            for c in range(channels):
                                dx[image, iy, ix, c] += cols[row, base + c]


@njit(**CONV_KERNEL)
def conv_direct_forward(x, kernel, first, count, geometry, z):
    """Convolution without columns, for a tiny patch (1 channel × 3×3: a 9-deep GEMM would be all overhead).
    x: (n, h, w, c); kernel: (kh·kw·c, filters); z: (count·out_h·out_w, filters), overwritten.

        for b, oy, ox: z[row, :] = Σ_{ki, kj, c inside the image} x[first + b, iy, ix, c] · kernel[(ki·kw + kj)·channels + c, :]
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    filters = kernel.shape[1]
    for b in range(count):
        image = first + b
        for oy in range(out_h):
            for ox in range(out_w):
                row = (b * out_h + oy) * out_w + ox
                for f in range(filters):
                    z[row, f] = 0.0
                for ki in range(kh):
                    iy = oy * sh - pad_top + ki * dh
                    if iy < 0 or iy >= height:
                        continue
                    for kj in range(kw):
                        ix = ox * sw - pad_left + kj * dw
                        if ix < 0 or ix >= width:
                            continue
                        base = (ki * kw + kj) * channels
                        for c in range(channels):
                            v = x[image, iy, ix, c]
                            for f in range(filters):  # contiguous in f: vectorizes
                                z[row, f] += v * kernel[base + c, f]


@njit(**CONV_KERNEL)
def conv_direct_weight_grad(x, dz, first, count, geometry, dkernel):
    """The kernel gradient of `count` images without columns (the tiny-patch twin of colsᵀ·dz).
    x: (n, h, w, c); dz: (count·out_h·out_w, filters); dkernel: (kh·kw·c, filters), overwritten.

        dkernel = 0
        for b, oy, ox, ki, kj, c inside the image: dkernel[(ki·kw + kj)·channels + c, :] += x[first + b, iy, ix, c] · dz[row, :]
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    filters = dz.shape[1]
    for p in range(dkernel.shape[0]):
        for f in range(filters):
            dkernel[p, f] = 0.0
    for b in range(count):
        image = first + b
        for oy in range(out_h):
            for ox in range(out_w):
                row = (b * out_h + oy) * out_w + ox
                for ki in range(kh):
                    iy = oy * sh - pad_top + ki * dh
                    if iy < 0 or iy >= height:
                        continue
                    for kj in range(kw):
                        ix = ox * sw - pad_left + kj * dw
                        if ix < 0 or ix >= width:
                            continue
                        base = (ki * kw + kj) * channels
                        for c in range(channels):
                            v = x[image, iy, ix, c]
                            for f in range(filters):
                                dkernel[base + c, f] += v * dz[row, f]


@njit(**CONV_KERNEL)
def sum_partials(partials, count, out):
    """out = partials[0] + partials[1] + … + partials[count − 1], added in that order (the per-chunk kernel
    gradients, so the bytes never depend on which thread finished first). partials: (chunks, k, f); out: (k, f).
    """
    for p in range(out.shape[0]):
        for f in range(out.shape[1]):
            out[p, f] = partials[0, p, f]
    for i in range(1, count):
        for p in range(out.shape[0]):
            for f in range(out.shape[1]):
                out[p, f] += partials[i, p, f]


KERNELS = ("im2col", "col2im", "conv_direct_forward", "conv_direct_weight_grad", "sum_partials")
