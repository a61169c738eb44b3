"""``python -m enchufe.relay``: the ``enchufe-relay`` command."""

if __name__ == "__main__":
    import sys

    from enchufe.cli.relay import main

    sys.exit(main())
