"""PMC-15M pipeline: PubMed Central open-access articles to WebDataset figure-caption shards.

Stages (each runnable alone, chained by :func:`biomedclip.pmc.pipeline.build`)::

    list -> fetch -> extract -> pair -> (dedup + split) -> write -> report

All state lives in one work directory (:class:`biomedclip.pmc.state.WorkDir`); every per-article
result is written atomically, so a killed run resumes where it stopped and produces byte-identical
shards. See ``biomedclip pmc --help``.
"""

from biomedclip.pmc.config import BuildConfig

__all__ = ["BuildConfig"]
