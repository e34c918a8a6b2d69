"""The `nnctl` command line: a thin click layer over the library (commands arrive with issue #3).

Importing this module must stay cheap: no Numba, no NumPy until a command runs.
"""

import click

from nnctl import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnctl")
def main():
    """Declarative deep-learning training from YAML files, on a Numba kernel engine."""


if __name__ == "__main__":
    main()
