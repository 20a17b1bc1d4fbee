"""Where the items to embed come from: image files, folders, CSV/Parquet tables, text files, shards.

Every source yields :class:`Item` s with a stable ``id`` (the resume key). Listing sources (files,
folders, tables, text files) are materialised as a list; WebDataset shards stream and are split
between DataLoader workers shard by shard.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from biomedclip.errors import InputError
from biomedclip.io_utils import expand_braces
from biomedclip.tables import CAPTION_COLUMNS, PATH_COLUMNS, read_table

IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".jpe",
        ".jfif",
    ]
)
TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".parquet", ".pq"})
TEXT_EXTENSIONS = frozenset({".txt", ".text"})
SHARD_EXTENSIONS = (".tar", ".tar.gz", ".tgz")
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")
WDS_TEXT_KEYS = ("txt", "caption", "text")


@dataclass(slots=True)
class Item:
    """One thing to embed. ``data`` carries image bytes for shard sources and ``image`` an
    in-memory PIL image given to the API (neither is written out)."""

    id: str
    path: str | None = None
    text: str | None = None
    data: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    image: Any = None


class Source:
    """Base class. ``has_images`` / ``has_texts`` say which modalities the source can give."""

    has_images: bool = False
    has_texts: bool = False
    meta_schema: pa.Schema = pa.schema([])
    description: str = ""

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise TypeError(f"{type(self).__name__} has no known length")

    @property
    def sized(self) -> bool:
        return True

    def items(self) -> Iterator[Item]:  # pragma: no cover - overridden
        raise NotImplementedError

    def shards(self) -> list[Any] | None:
        """Units a DataLoader worker can read independently, or ``None`` for listing sources."""
        return None

    def shard_items(self, shard: Any) -> Iterator[Item]:  # pragma: no cover - shard sources
        raise NotImplementedError


class ListSource(Source):
    """A materialised list of items."""

    def __init__(
        self,
        items: Sequence[Item],
        has_images: bool,
        has_texts: bool,
        meta_schema: pa.Schema | None = None,
        description: str = "",
    ):
        self._items = list(items)
        self.has_images, self.has_texts = has_images, has_texts
        self.meta_schema = meta_schema or pa.schema([])
        self.description = description
        ids = [it.id for it in self._items]
        if len(set(ids)) != len(ids):
            seen, dup = set(), None
            for i in ids:
                if i in seen:
                    dup = i
                    break
                seen.add(i)
            raise InputError(f"{description or 'input'}: duplicate id {dup!r} (ids must be unique)")

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Iterator[Item]:
        return iter(self._items)


# ---- constructors ------------------------------------------------------------------------------
def image_files(paths: Sequence[str | Path]) -> ListSource:
    """Image files given one by one; the id is the path as given."""
    items = [Item(id=str(p), path=str(p)) for p in paths]
    return ListSource(items, True, False, description="image files")


def texts(values: Sequence[str], prefix: str = "text") -> ListSource:
    """Texts given directly; ids ``text-0``, ``text-1`` ..."""
    items = [Item(id=f"{prefix}-{i}", text=t) for i, t in enumerate(values)]
    return ListSource(items, False, True, description="texts")


def image_folder(root: str | Path, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> ListSource:
    """Every image below ``root`` (recursive, sorted); the id is the path relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in extensions and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise InputError(
            f"{root}: no image files found (extensions: {' '.join(sorted(extensions))})"
        )
    items = [Item(id=p.relative_to(root).as_posix(), path=str(p)) for p in files]
    return ListSource(items, True, False, description=str(root))


def text_file(path: str | Path) -> ListSource:
    """One text per non-blank line; the id is ``line-N`` (1-based line number)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read text file ({e})") from e
    items = [Item(id=f"line-{n}", text=line) for n, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise InputError(f"{path}: no texts (the file has no non-blank lines)")
    return ListSource(items, False, True, description=str(path))


def table(
    path: str | Path,
    path_column: str | None = None,
    caption_column: str | None = None,
    id_column: str | None = None,
    root: str | Path | None = None,
) -> ListSource:
    """A table (:func:`biomedclip.tables.read_table`) as an embedding source; other columns are kept as metadata.

    The id is the ``id_column`` when given (or a column named ``id``), else the path as written,
    else ``row-N``.
    """
    t = read_table(path, path_column, caption_column, id_column, root)
    if t.path_column is None and t.caption_column is None:
        raise InputError(
            f"{t.source}: no image path column ({'/'.join(PATH_COLUMNS)}) and no caption column "
            f"({'/'.join(CAPTION_COLUMNS)}); name them with --path-column / --caption-column"
        )
    items = [
        Item(
            id=r.id if r.id is not None else r.image if r.image is not None else f"row-{r.index}",
            path=r.path,
            text=r.text,
            meta=r.meta,
        )
        for r in t.rows
    ]
    has_images, has_texts = t.path_column is not None, t.caption_column is not None
    return ListSource(items, has_images, has_texts, t.meta_schema, str(t.source))


# ---- WebDataset shards --------------------------------------------------------------------------
WDS_META_SCHEMA = pa.schema([pa.field("shard", pa.string()), pa.field("metadata", pa.string())])


class ShardSource(Source):
    """WebDataset tar shards (``KEY.jpg``/``KEY.png`` + ``KEY.txt`` + ``KEY.json``), as the PMC
    pipeline writes them. The id is the sample key; ``metadata`` holds the ``.json`` member."""

    has_images = True
    has_texts = True
    meta_schema = WDS_META_SCHEMA

    def __init__(self, shards: Sequence[str | Path]):
        self._shards = [str(s) for s in shards]
        missing = [s for s in self._shards if not Path(s).is_file()]
        if missing:
            raise InputError(f"{missing[0]}: shard not found")
        self.description = f"{len(self._shards)} shard(s)"

    @property
    def sized(self) -> bool:
        return False

    def shards(self) -> list[str]:
        return list(self._shards)

    def items(self) -> Iterator[Item]:
        for shard in self._shards:
            yield from self.shard_items(shard)

    def shard_items(self, shard: str) -> Iterator[Item]:
        name = Path(shard).name
        try:
            with tarfile.open(shard, "r|*") as tar:
                key, group = None, {}
                for member in tar:
                    if not member.isfile():
                        continue
                    base = member.name
                    slash = base.rfind("/")
                    dot = base.find(".", slash + 1)
                    if dot < 0:
                        continue
                    k, ext = base[:dot], base[dot + 1 :].lower()
                    if k != key and key is not None:
                        yield _wds_item(key, group, name)
                        group = {}
                    key = k
                    f = tar.extractfile(member)
                    group[ext] = f.read() if f else b""
                if key is not None:
                    yield _wds_item(key, group, name)
        except (OSError, tarfile.TarError) as e:
            raise InputError(f"{shard}: cannot read shard ({e})") from e


def _wds_item(key: str, group: dict[str, bytes], shard: str) -> Item:
    data = next((group[k] for k in WDS_IMAGE_KEYS if k in group), None)
    raw_text = next((group[k] for k in WDS_TEXT_KEYS if k in group), None)
    text = raw_text.decode("utf-8", errors="replace") if raw_text is not None else None
    meta = group.get("json")
    meta_text = meta.decode("utf-8", errors="replace") if meta is not None else None
    if meta_text is not None:
        try:
            json.loads(meta_text)
        except ValueError:
            meta_text = json.dumps({"invalid_json": meta_text})
    ext = next((k for k in WDS_IMAGE_KEYS if k in group), None)
    return Item(
        id=key,
        path=f"{shard}#{key}.{ext}" if ext else None,
        text=text,
        data=data,
        meta={"shard": shard, "metadata": meta_text},
    )


# ---- from command-line inputs -------------------------------------------------------------------
def _is_shard(p: str) -> bool:
    return p.lower().endswith(SHARD_EXTENSIONS)


def from_inputs(
    inputs: Sequence[str],
    texts_given: Sequence[str] = (),
    path_column: str | None = None,
    caption_column: str | None = None,
    id_column: str | None = None,
    root: str | None = None,
) -> Source:
    """Pick the source for command-line inputs: image files, one folder, one table, one text file,
    WebDataset shards (``.tar``; braces like ``shard-{000..009}.tar`` expand), or ``--text``."""
    expanded = [p for s in inputs for p in expand_braces(s)]
    if texts_given and expanded:
        raise InputError("give either --text or input files, not both")
    if texts_given:
        return texts(list(texts_given))
    if not expanded:
        raise InputError(
            "nothing to embed: give image files, a folder, a table, a text file, shards, or --text"
        )
    if all(_is_shard(s) for s in expanded):
        return ShardSource(expanded)
    if len(expanded) == 1:
        p = Path(expanded[0])
        if p.is_dir():
            return image_folder(p)
        suffix = p.suffix.lower()
        if suffix in TABLE_EXTENSIONS:
            return table(p, path_column, caption_column, id_column, root)
        if suffix in TEXT_EXTENSIONS:
            return text_file(p)
    dirs = [s for s in expanded if Path(s).is_dir()]
    if dirs:
        raise InputError(f"{dirs[0]}: give one folder on its own (it is searched recursively)")
    odd = [
        s
        for s in expanded
        if Path(s).suffix.lower() in TABLE_EXTENSIONS | TEXT_EXTENSIONS or _is_shard(s)
    ]
    if odd:
        raise InputError(f"{odd[0]}: tables, text files and shards must be given on their own")
    return image_files(expanded)
