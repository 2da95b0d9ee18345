"""Entry point of the similarity benchmark: :mod:`protein_performer.experiments.similarity_bench`."""

from protein_performer.experiments.similarity_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
