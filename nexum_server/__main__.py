"""`python -m nexum_server ...` is the `nexum` command."""

from .cli import main

if __name__ == "__main__":
    main()
