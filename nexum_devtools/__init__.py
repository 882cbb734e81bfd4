"""Tools for developing and trying the project without the internet, shared by the tests, the
benchmark and `make demo`.

    web       the stand-in web: SearXNG-style search and realistic pages on 127.0.0.1 (`nexum-web`)
    procs     real processes with ready lines: `nexum dev`, `worker.py`, the stand-in web
    postgres  a throwaway PostgreSQL cluster on a free loopback port, from the machine's binaries
"""
