"""MovieLens-100k as shipped inside the `recbole` package (`pip install --no-deps recbole`).

GroupLens' terms forbid redistributing MovieLens, so hrqtok never copies it into the project:
it reads the files from the installed package, found without importing recbole (whose
imports pull in dependencies we do not install).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from hrqtok.atomic import atomic_path
from hrqtok.errors import InputError
from hrqtok.sources.interactions import InteractionFields, read_delimited

PACKAGE_FOLDER = Path("dataset_example") / "ml-100k"
INTERACTIONS_FILE = "ml-100k.inter"
ITEMS_FILE = "ml-100k.item"
FIELDS = InteractionFields()  # ml-100k.inter's columns are hrqtok's default names
INSTALL_HINT = "install it with `pip install --no-deps recbole==1.2.1` (or `make setup`)"


def movielens_100k_dir() -> Path:
    """The folder holding ml-100k.inter and ml-100k.item in the installed recbole package."""
    spec = importlib.util.find_spec("recbole")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / PACKAGE_FOLDER
        if (folder / INTERACTIONS_FILE).is_file() and (folder / ITEMS_FILE).is_file():
            return folder
    found = "is not installed" if not locations else "has no dataset_example/ml-100k"
    raise InputError(f"MovieLens-100k comes from the recbole package, which {found}; "
                     f"{INSTALL_HINT}")


def interactions_path() -> str:
    return str(movielens_100k_dir() / INTERACTIONS_FILE)


def item_text(title: str, year: str, genres: list[str]) -> str:
    """The text hrqtok embeds for a movie: "Toy Story (1995). Genres: Animation, Comedy."."""
    text = f"{title} ({year})" if year.isdigit() else title  # one movie's year is "unkonwn"
    return f"{text}. Genres: {', '.join(genres)}." if genres else f"{text}."


def movie_records(path: str | Path | None = None) -> list[dict]:
    """One record per movie of ml-100k.item: id, title, year, genres and the text to embed."""
    path = str(path or movielens_100k_dir() / ITEMS_FILE)
    table = read_delimited(path, "\t")
    out = []
    for row in table.to_pylist():
        title, year = (row.get("movie_title") or "").strip(), (row.get("release_year") or "").strip()
        genres = (row.get("class") or "").split()
        out.append({"id": row["item_id"], "title": title, "year": year, "genres": genres,
                    "text": item_text(title, year, genres)})
    return out


def export_movielens_100k(out_dir: str | Path) -> dict:
    """Write MovieLens-100k as ``items.jsonl`` (id, title, year, genres, text: ready for
    `hrqtok fit` / `encode`) and ``interactions.tsv`` (user_id, item_id, rating, timestamp:
    ready for `hrqtok eval next-item --interactions`). Each file appears whole or not at all."""
    folder = movielens_100k_dir()
    out_dir = Path(out_dir)
    movies = movie_records(folder / ITEMS_FILE)
    with atomic_path(out_dir / "items.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(movie, ensure_ascii=False) + "\n" for movie in movies)
    events = read_delimited(str(folder / INTERACTIONS_FILE), "\t")
    columns = ("user_id", "item_id", "rating", "timestamp")
    rows = zip(*(events.column(name).to_pylist() for name in columns))
    with atomic_path(out_dir / "interactions.tsv") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(columns) + "\n")
        f.writelines("\t".join(row) + "\n" for row in rows)
    return {"items": len(movies), "interactions": events.num_rows,
            "paths": [str(out_dir / "items.jsonl"), str(out_dir / "interactions.tsv")]}
