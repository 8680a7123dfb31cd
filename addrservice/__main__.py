"""`python -m addrservice` runs the server."""

from addrservice.tornado.server import main

if __name__ == '__main__':
    main()
