"""``python -m enchufe.scan``: the ``enchufe-scan`` command."""

if __name__ == "__main__":
    import sys

    from enchufe.cli.scan import main

    sys.exit(main())
