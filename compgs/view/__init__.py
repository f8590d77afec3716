"""The browser viewer: serve it (`compgs view`), export it (`compgs export`), live training view.

The viewer itself is a static web app (viewer/ in the repository, built into
compgs/view/static/) that downloads a splat file and decodes it in the browser.
"""

from compgs.view.export import export_html
from compgs.view.server import ViewerServer

__all__ = ["ViewerServer", "export_html"]
