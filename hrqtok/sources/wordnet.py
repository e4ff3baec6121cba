"""WordNet 3.0 nouns through nltk, offline (HRQ paper §4.1, Appendix B.1).

Where the data comes from, first found wins:
1. a WordNet the user's nltk already finds (``nltk.download('wordnet')``, ``$NLTK_DATA``);
2. the nltk folder hrqtok built earlier in its cache;
3. the Debian packages ``wordnet-base`` + ``wordnet-sense-index``, installed system-wide
   (/usr/share/wordnet) or unpacked into the cache by ``scripts/install-wordnet.sh``. Their
   files are copied into ``<cache>/wordnet/nltk_data/corpora/wordnet`` together with the
   ``lexnames`` file that Debian lacks.

Nothing is ever downloaded at run time. nltk refuses readers outside the folders on
``nltk.data.path`` (and resolves symlinks first), so the resolved root is added there.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hrqtok.atomic import atomic_dir
from hrqtok.errors import InputError
from hrqtok.paths import cache_dir
from hrqtok.sources.hierarchy import Hierarchy

DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
SYSTEM_DIR = Path("/usr/share/wordnet")
# The files nltk's reader opens when it starts; a folder without them is not a WordNet.
REQUIRED = ("data.noun", "index.noun", "index.sense", "noun.exc")
HOW_TO_GET = (
    "no WordNet 3.0 data found; run `make setup` (it installs the Debian packages "
    f"{' and '.join(DEBIAN_PACKAGES)}), or `sh scripts/install-wordnet.sh`, or in Python "
    "`nltk.download('wordnet')`")

# WordNet's lexicographer files, numbered 00..44: (name, part-of-speech number). nltk reads
# them from `lexnames`, which the Debian packages do not ship.
LEXNAMES = (
    [("adj.all", 3), ("adj.pert", 3), ("adv.all", 4)]
    + [(f"noun.{n}", 1) for n in (
        "Tops act animal artifact attribute body cognition communication event feeling food "
        "group location motive object person phenomenon plant possession process quantity "
        "relation shape state substance time").split()]
    + [(f"verb.{n}", 2) for n in (
        "body change cognition communication competition consumption contact creation "
        "emotion motion perception possession social stative weather").split()]
    + [("adj.ppl", 3)]
)


def wordnet_cache() -> Path:
    return cache_dir() / "wordnet"


def debian_dir() -> Path:
    """Where scripts/install-wordnet.sh unpacks the Debian packages without root."""
    return wordnet_cache() / "debian"


def _built_root() -> Path:
    return wordnet_cache() / "nltk_data"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{pos}\n" for i, (name, pos) in enumerate(LEXNAMES))


def _is_wordnet(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED)


def _debian_sources() -> list[Path]:
    return [SYSTEM_DIR, debian_dir() / "usr" / "share" / "wordnet"]


def build_nltk_root(source: Path) -> Path:
    """Copy Debian WordNet files into an nltk data folder in the cache, with `lexnames`.
    Copies, not symlinks: nltk resolves links and refuses targets outside its paths."""
    root = _built_root()
    with atomic_dir(root) as tmp:
        target = tmp / "corpora" / "wordnet"
        target.mkdir(parents=True)
        for path in source.iterdir():
            if path.is_file():
                shutil.copyfile(path, target / path.name)
        (target / "lexnames").write_text(lexnames_text())
    return root


def find_nltk_root() -> Path:
    """The nltk data root holding corpora/wordnet, building it from Debian files if needed."""
    import nltk

    try:
        found = Path(str(nltk.data.find("corpora/wordnet")))
        if found.is_dir() and _is_wordnet(found):
            return found.parent.parent
    except LookupError:
        pass
    built = _built_root()
    if _is_wordnet(built / "corpora" / "wordnet") and (built / "corpora/wordnet/lexnames").is_file():
        return built
    for source in _debian_sources():
        if _is_wordnet(source):
            return build_nltk_root(source)
    raise InputError(HOW_TO_GET)


@contextmanager
def open_wordnet():
    """An nltk WordNetCorpusReader over the data find_nltk_root locates, its files closed
    after the block: the reader keeps each data file it reads open and has no close(), so a
    discarded reader left them to the garbage collector (a ResourceWarning wherever it ran)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = find_nltk_root().resolve()
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore", UserWarning)
        reader = WordNetCorpusReader(str(root / "corpora" / "wordnet"), None)
    try:
        yield reader
    finally:
        for stream in getattr(reader, "_data_file_map", {}).values():
            if stream is not None:
                stream.close()


def _parents(synset) -> list:
    return synset.hypernyms() + synset.instance_hypernyms()


def _synset(reader, name: str):
    from nltk.corpus.reader.wordnet import WordNetError

    try:
        synset = reader.synset(name)
    except (WordNetError, ValueError, LookupError):
        raise InputError(f"--root: unknown synset {name!r}; names look like mammal.n.01") from None
    if synset.pos() != "n":
        raise InputError(f"--root: {name!r} is not a noun synset; use one like mammal.n.01")
    return synset


def load_nouns(root: str | None = None) -> Hierarchy:
    """All WordNet noun synsets (``root`` None), or ``root`` and every noun below it through
    hyponyms and instance hyponyms, with the transitive closure of hypernymy among them."""
    with open_wordnet() as reader:
        if root is None:
            synsets = list(reader.all_synsets("n"))
        else:
            top = _synset(reader, root)
            below = list(top.closure(lambda s: s.hyponyms() + s.instance_hyponyms()))
            if not below:
                raise InputError(f"--root: {root!r} has no hyponyms; pick a synset with a subtree")
            synsets = [top, *sorted(set(below), key=lambda s: s.name())]
        row = {s: i for i, s in enumerate(synsets)}
        parents = [[row[p] for p in _parents(s) if p in row] for s in synsets]
        return Hierarchy.from_parents(
            names=[s.name() for s in synsets], parents=parents,
            glosses=[s.definition() for s in synsets], lexnames=[s.lexname() for s in synsets])


def main() -> None:
    """`python -m hrqtok.sources.wordnet`: find or build the nltk folder, print the counts."""
    try:
        root = find_nltk_root()
    except InputError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if "--check" in sys.argv:
        print(f"WordNet: {root}")
        return
    nouns = load_nouns()
    depth = np.asarray(nouns.depths)
    print(f"WordNet: {root}: {len(nouns)} nouns, {len(nouns.pairs)} closure pairs, "
          f"depth up to {depth.max()}")


if __name__ == "__main__":
    main()
