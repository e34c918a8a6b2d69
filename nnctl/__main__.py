"""`python -m nnctl` runs the command line.

A Ctrl-C while the command line itself is being imported exits 130 quietly too."""

import sys

try:
    from nnctl.cli import main
except KeyboardInterrupt:
    sys.stderr.write("interrupted (Ctrl-C)\n")
    sys.exit(130)

main()
