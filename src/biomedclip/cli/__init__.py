"""The ``biomedclip`` command line (see :mod:`biomedclip.cli.main`)."""
