"""``python -m hwopt`` runs the command line."""

from hwopt.cli import main

if __name__ == "__main__":
    main()
