"""Blank-screen time: seconds from launching a command to each line (or redraw) it prints, on a pty or a pipe.

Run: python bench/first_output.py [--pipe] -- nnctl train configs/mnist.yaml --set epochs=1
"""

import os
import pty
import re
import subprocess
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def main(argv: list[str]) -> None:
    pipe = argv[0] == "--pipe"
    command = argv[argv.index("--") + 1:]
    began = time.perf_counter()
    if pipe:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = process.stdout.fileno()
    else:
        reader, child = pty.openpty()
        process = subprocess.Popen(command, stdout=child, stderr=child, stdin=child)
        os.close(child)
    first, buffer = None, b""
    while True:
        try:
            chunk = os.read(reader, 65536)
        except OSError:  # the pty's other end closed
            break
        if not chunk:
            break
        now = time.perf_counter() - began
        first = now if first is None else first
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        for line in lines:
            text = ANSI.sub("", line.decode(errors="replace")).strip()
            if text:
                print(f"{now:7.2f}s  {text[:110]}")
    process.wait()
    print(f"first output after {first:.2f} s; exit {process.returncode}; total {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
