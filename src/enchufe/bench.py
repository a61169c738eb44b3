"""``python -m enchufe.bench``: the ``enchufe-bench`` command."""

if __name__ == "__main__":
    import sys

    from enchufe.cli.bench import main

    sys.exit(main())
