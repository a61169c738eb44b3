"""``python -m enchufe.resolve``: the ``enchufe-resolve`` command."""

if __name__ == "__main__":
    import sys

    from enchufe.cli.resolve import main

    sys.exit(main())
