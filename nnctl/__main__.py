"""`python -m nnctl` runs the command line (through the same Ctrl-C-guarded entry point as `nnctl`)."""

from nnctl.entry import main

main()
