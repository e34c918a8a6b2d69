"""`nnctl.ops`: the operations a custom layer's `call` (or a custom loss) is written with, with Keras 3's
`keras.ops` names, and the reverse-mode tape that differentiates them. The core ops and the tape are in
core.py, the reductions in reductions.py; more.py adds the rest of what custom layers commonly reach for."""

from nnctl.ops.core import *  # noqa: F401,F403
from nnctl.ops.core import __all__ as _core
from nnctl.ops.more import *  # noqa: F401,F403
from nnctl.ops.more import __all__ as _more
from nnctl.ops.reductions import *  # noqa: F401,F403
from nnctl.ops.reductions import __all__ as _reductions

__all__ = sorted(set(_core) | set(_more) | set(_reductions))
