"""WorldStereo Explorer: the browser app (local and Hugging Face Space entry point).

    python app.py [--host 127.0.0.1] [--port 7860]

Serves one port: the Gradio page at ``/`` and each session's 3D viewport through ``/viser/<token>/``.
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are honoured; on a Space (``SPACE_ID`` set) it binds 0.0.0.0.
"""

from __future__ import annotations

import sys

from worldstereo.threads import configure_process, thread_budget


def main(argv: list[str] | None = None) -> None:
    # One thread budget (WORLDSTEREO_THREADS, else the cores this process may use) less one core for
    # the web server: spinning pools oversubscribed with the server's threads slow generation down
    # badly on small (2-core) machines such as a CPU Space. Concurrent generations divide it.
    budget = thread_budget()
    configure_process(max(1, budget - 1))
    from ui.config import AppConfig
    from ui.server import serve

    serve(AppConfig.from_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
