"""``biomedclip serve``: an HTTP service (FastAPI) with dynamic batching and a browser app.

::

    from biomedclip.serve import ServeSettings, create_app, serve
    serve(ServeSettings(model="./ckpt", index="./my-index"), port=8000)

Needs the ``serve`` extra: ``pip install 'biomedclip[serve]'``.
"""

from biomedclip.serve.config import ServeSettings


def create_app(*args, **kwargs):
    from biomedclip.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


def serve(*args, **kwargs):
    from biomedclip.serve.app import serve as _serve

    return _serve(*args, **kwargs)


__all__ = ["ServeSettings", "create_app", "serve"]
