"""`python -m nnctl` runs the command line."""

from nnctl.cli import main

main()
