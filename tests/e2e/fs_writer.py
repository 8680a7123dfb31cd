"""Worker processes for `fs_crash_test`, run as a script.

    fs_writer.py loop STORE PREFIX SEED
        Create and update entries forever. Before each write it prints
        "BEGIN <op> <nickname> <sha256>", after it "ACK <op> <nickname>
        <sha256>", where the hash is of the entry's canonical JSON.

    fs_writer.py race STORE NICKNAME GO_FILE INDEX
        Print "READY", wait for GO_FILE to exist, create NICKNAME, then
        print "WON <sha256>" or "LOST <exception class name>".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import time
from typing import Any

from addrservice.database.fs import FilesystemAddressBookDB
from addrservice.datamodel import AddressEntry

# One write in this many is of a large (~50 KB) entry.
LARGE_EVERY = 8
LARGE_SIZE = 50_000


def canonical_sha(document: Any) -> str:
    """The sha256 of a document's canonical JSON (sorted keys, compact)."""
    text = json.dumps(document, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def make_document(nickname: str, version: int, large: bool) -> dict[str, Any]:
    document: dict[str, Any] = {'full_name': f'{nickname} v{version}'}
    if large:
        document['addresses'] = [
            {'kind': 'home', 'street_name': f'Street {i} ' + 'x' * 180,
             'pincode': 100000 + i, 'country': 'India'}
            for i in range(LARGE_SIZE // 250)
        ]
    return document


def say(*words: str) -> None:
    print(*words, flush=True)


async def loop_writes(store: str, prefix: str, seed: int) -> None:
    db = FilesystemAddressBookDB(store)
    nicknames = [nick async for nick, _ in db.read_all_addresses()]
    rng = random.Random(seed)
    say('READY')
    for version in range(1, 1_000_000):
        create = not nicknames or rng.random() < 0.4
        nickname = f'{prefix}-{version}' if create \
            else rng.choice(nicknames)
        document = make_document(nickname, version,
                                 rng.randrange(LARGE_EVERY) == 0)
        op, sha = ('create' if create else 'update'), canonical_sha(document)
        say('BEGIN', op, nickname, sha)
        entry = AddressEntry.from_api_dm(document)
        if create:
            await db.create_address(entry, nickname)
            nicknames.append(nickname)
        else:
            await db.update_address(nickname, entry)
        say('ACK', op, nickname, sha)


async def race(store: str, nickname: str, go_file: str, index: int) -> None:
    db = FilesystemAddressBookDB(store)
    document = {'full_name': f'racer {index}'}
    entry = AddressEntry.from_api_dm(document)
    say('READY')
    deadline = time.monotonic() + 10
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        await db.create_address(entry, nickname)
    except KeyError as e:
        say('LOST', type(e).__name__)
    else:
        say('WON', canonical_sha(document))
    finally:
        db.stop()


def main(argv: list[str]) -> None:
    if argv[0] == 'loop':
        asyncio.run(loop_writes(argv[1], argv[2], int(argv[3])))
    elif argv[0] == 'race':
        asyncio.run(race(argv[1], argv[2], argv[3], int(argv[4])))
    else:
        sys.exit(f'fs_writer: unknown mode {argv[0]!r}')


if __name__ == '__main__':
    main(sys.argv[1:])
