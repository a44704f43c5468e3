"""WorldStereo Explorer: the browser app (local and Hugging Face Space entry point).

    python app.py [--host 127.0.0.1] [--port 7860]

Serves one port: the Gradio page at ``/`` and each session's 3D viewport through ``/viser/<token>/``.
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are honoured; on a Space (``SPACE_ID`` set) it binds 0.0.0.0.
"""

from __future__ import annotations

import os
import sys

import torch

from ui.config import AppConfig
from ui.server import serve


def main(argv: list[str] | None = None) -> None:
    # Leave one core to the web server: torch's spinning OpenMP threads oversubscribed with the
    # server's threads slow generation down badly on small (2-core) machines such as a CPU Space.
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    serve(AppConfig.from_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
