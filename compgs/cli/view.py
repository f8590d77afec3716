"""`compgs view PATH`: open a splat file in the browser viewer, served from localhost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def view(
    path: Annotated[Path, tyro.conf.Positional],
    port: int = 8080,
    host: str = "127.0.0.1",
    browser: bool = True,
) -> None:
    """Serve the viewer and PATH on HOST:PORT and print the URL (Ctrl-C stops it).

    The browser downloads the file and decodes it itself. Only the viewer's own
    files and PATH are served; every other request gets a 404.

    Args:
        path: a .cgs, .ply, .splat or .spz file.
        port: TCP port (0 picks a free one).
        host: address to bind; the default is reachable from this machine only.
        browser: open the URL in the default web browser.
    """
    import webbrowser

    from compgs.io import detect_format
    from compgs.view.server import ViewerServer

    detect_format(path)  # a clear error now rather than in the browser
    with ViewerServer(path, host=host, port=port) as server:
        print(f"serving {path} at {server.url}  (Ctrl-C to stop)", flush=True)
        if browser:
            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped")
