"""Regenerate data/wordnet_glosses.jsonl: WordNet 3.0 noun glosses from a few distinct branches.

Not part of the package: it needs nltk and a WordNet data folder (NLTK_DATA, or --nltk-data).
Each record: id (synset name), text ("lemma, lemma: gloss"), branch (the root it was taken
under), path (synset names from that root down to the parent, along the first hypernym path)
and lexname. Items are sampled with a fixed seed so the file is reproducible.

    python scripts/make_sample_data.py --nltk-data /path/to/nltk_data
"""

from __future__ import annotations

import argparse
import json
import random

# Distinct branches of the noun hierarchy, and how many synsets to take under each.
BRANCHES = {
    "mammal.n.01": 400,
    "bird.n.01": 300,
    "fish.n.01": 200,
    "tree.n.01": 250,
    "vehicle.n.01": 250,
    "musical_instrument.n.01": 200,
    "dish.n.02": 200,
    "disease.n.01": 250,
    "sport.n.01": 200,
    "building.n.01": 250,
}


def descendants(root):
    return sorted(set(root.closure(lambda s: s.hyponyms() + s.instance_hyponyms())), key=str)


def path_below(synset, root) -> list[str]:
    for path in synset.hypernym_paths():
        if root in path:
            return [s.name() for s in path[path.index(root) : -1]]
    return [root.name()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nltk-data", help="nltk data root holding corpora/wordnet")
    parser.add_argument("--out", default="data/wordnet_glosses.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import nltk

    if args.nltk_data:
        nltk.data.path.insert(0, args.nltk_data)
    from nltk.corpus import wordnet as wn

    rng = random.Random(args.seed)
    seen: set[str] = set()
    records = []
    for root_name, count in BRANCHES.items():
        root = wn.synset(root_name)
        pool = [s for s in descendants(root) if s.name() not in seen]
        for synset in sorted(rng.sample(pool, min(count, len(pool))), key=lambda s: s.name()):
            seen.add(synset.name())
            lemmas = ", ".join(name.replace("_", " ") for name in synset.lemma_names()[:3])
            records.append({
                "id": synset.name(),
                "text": f"{lemmas}: {synset.definition()}",
                "branch": root_name,
                "path": path_below(synset, root),
                "lexname": synset.lexname(),
            })
    rng.shuffle(records)
    with open(args.out, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} items to {args.out}")


if __name__ == "__main__":
    main()
