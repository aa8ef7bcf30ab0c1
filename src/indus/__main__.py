"""``python -m indus``: the same CLI, for launchers that want a module (``torchrun -m indus``)."""

from indus.cli import main

if __name__ == "__main__":
    main()
