"""Benchmarks of the anomaly detector on public data sets."""

import re

_COMMAND = r"``python -m [\w.]+``"


def help_description(doc: str) -> str:
    """Return the first line of a module docstring as plain text for ``--help``.

    The command name, which argparse's usage line already shows, and the
    reStructuredText literal markup are left out.
    """
    line = doc.strip().splitlines()[0]
    line = re.sub(rf"^{_COMMAND}:\s*", "", line)
    line = re.sub(rf":\s*{_COMMAND}\.?$", ".", line)
    line = line.replace("``", "")
    return line[:1].upper() + line[1:]
