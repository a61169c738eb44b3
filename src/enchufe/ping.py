"""``python -m enchufe.ping``: the ``enchufe-ping`` command."""

if __name__ == "__main__":
    import sys

    from enchufe.cli.ping import main

    sys.exit(main())
