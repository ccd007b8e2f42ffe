"""CLI commands: `store ls|mb|rb|put|get|rm|url` over the profile's object store.

Locations are `BUCKET[/KEY-OR-PREFIX]` (an `s3://` or `local://` scheme is accepted). Keys are data:
every key printed goes through safe_text, so a key cannot drive the terminal.
"""
from __future__ import annotations

import argparse
import re
from functools import wraps
from pathlib import Path

from .context import Context

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_URL_EXPIRY_S = 7 * 86400  # S3's limit for presigned URLs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "store",
        help="object store: list, make buckets, upload, download, delete, share",
        description="Browse and move data in the profile's object store (a local folder or S3).",
    )
    inner = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)

    ls = inner.add_parser("ls", help="list buckets, or one level of a bucket (folders end in /)")
    ls.add_argument("location", nargs="?", metavar="BUCKET[/PREFIX]")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N entries (0: all; default 1000)")
    ls.set_defaults(func=cmd_ls)

    mb = inner.add_parser("mb", help="make a bucket")
    mb.add_argument("bucket", metavar="BUCKET")
    mb.set_defaults(func=cmd_mb)

    rb = inner.add_parser("rb", help="remove an empty bucket")
    rb.add_argument("bucket", metavar="BUCKET")
    rb.set_defaults(func=cmd_rb)

    put = inner.add_parser("put", help="upload a file, or a folder recursively")
    put.add_argument("src", metavar="SRC", type=Path)
    put.add_argument("dest", metavar="BUCKET/KEY", help="the key for a file (empty or ending in / keeps SRC's name); the prefix for a folder")
    put.set_defaults(func=cmd_put)

    get = inner.add_parser("get", help="download an object, or every object under a prefix")
    get.add_argument("src", metavar="BUCKET/KEY")
    get.add_argument("dest", metavar="DEST", type=Path)
    get.set_defaults(func=cmd_get)

    rm = inner.add_parser("rm", help="delete objects (with --recursive, everything under a prefix)")
    rm.add_argument("locations", nargs="+", metavar="BUCKET/KEY")
    rm.add_argument("--recursive", "-r", action="store_true", help="delete every object under each prefix")
    rm.set_defaults(func=cmd_rm)

    url = inner.add_parser("url", help="a URL to fetch an object (presigned on S3, file:// locally)")
    url.add_argument("location", metavar="BUCKET/KEY")
    url.add_argument("--expires", default="1h", metavar="T", help="lifetime of a presigned URL: 90s, 15m, 1h, 7d")
    url.set_defaults(func=cmd_url)


def _os_errors(func):
    """An OSError (a full disk, a permission) is a failure to report in one line, not a traceback."""

    @wraps(func)
    def run(args: argparse.Namespace, ctx: Context) -> int:
        from backend.facade import StoreError

        try:
            return func(args, ctx)
        except BrokenPipeError:  # the reader went away (`| head`): not a store failure
            raise
        except OSError as exc:
            where = f": {show(str(exc.filename))}" if exc.filename else ""
            raise StoreError(f"store {args.store_command}: {exc.strerror or exc}{where}") from None

    return run


def show(text: str) -> str:
    """A key as printable text: undecodable bytes and control characters made visible."""
    from .output import safe_text

    raw = text.encode("utf-8", "surrogateescape")
    return safe_text(raw.decode("utf-8", "backslashreplace"))


def parse_duration(text: str) -> int:
    from backend.facade import BadInput

    m = _DURATION.match(text)
    if not m:
        raise BadInput(f"--expires {text!r}: expected seconds or a number with s, m, h or d (e.g. 1h)")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
    if not 1 <= seconds <= MAX_URL_EXPIRY_S:
        raise BadInput(f"--expires {text!r}: must be between 1s and 7d")
    return seconds


def _location(text: str) -> tuple[str, str]:
    from backend.facade import split_location, validate_key

    bucket, key = split_location(text)
    if key:
        validate_key(key)
    return bucket, key


def _iso(dt) -> str | None:
    return None if dt is None else dt.isoformat(timespec="seconds")


def _when(dt) -> str:
    return "" if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M")


@_os_errors
def cmd_ls(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 0:
        from backend.facade import BadInput

        raise BadInput(f"--limit {args.limit}: must be 0 (all) or more")
    if not args.location:
        return _ls_buckets(args, ctx)
    return _ls_level(args, ctx)


def _ls_buckets(args: argparse.Namespace, ctx: Context) -> int:
    from .output import print_json, print_table

    backend = ctx.backend
    store = backend.store
    buckets = store.list_buckets()  # a local store got the samples' data when it was opened
    if args.limit:
        buckets = buckets[: args.limit]
    if args.json:
        print_json([{"name": b.name, "created": _iso(b.created)} for b in buckets])
        return 0
    if not buckets:
        print(f"no buckets in {store.describe()}; make one with `dlaas-tui store mb NAME`")
        return 0
    print_table(["BUCKET", "CREATED"], [[show(b.name), _when(b.created)] for b in buckets])
    return 0


def _ls_level(args: argparse.Namespace, ctx: Context) -> int:
    import sys

    from ..formatting import human_bytes

    from .output import print_json, print_table

    bucket, prefix = _location(args.location)
    store = ctx.backend.store
    items, token = [], None
    while True:
        want = 1000 if not args.limit else min(1000, args.limit - len(items))
        page = store.list(bucket, prefix, page_size=want, token=token)
        items.extend(page.items)
        token = page.next_token
        if token is None or (args.limit and len(items) >= args.limit):
            break
    if args.json:
        print_json(
            {
                "bucket": bucket,
                "prefix": prefix,
                "items": [
                    {
                        "key": i.key,
                        "name": i.name,
                        "is_prefix": i.is_prefix,
                        "size": None if i.is_prefix else i.size,
                        "modified": _iso(i.modified),
                        "etag": i.etag,
                    }
                    for i in items
                ],
                "truncated": token is not None,
            }
        )
        return 0
    folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    rows = [
        [show(i.key[len(folder) :]), "folder" if i.is_prefix else human_bytes(i.size), _when(i.modified)]
        for i in items
    ]
    if rows:
        print_table(["NAME", "SIZE", "MODIFIED"], rows)
    else:
        print(f"nothing under {show(store.uri(bucket, prefix))}")
    if token is not None:
        print("(more entries follow: raise --limit, or --limit 0 for all)", file=sys.stderr)
    return 0


def cmd_mb(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import validate_bucket_name

    backend = ctx.backend
    backend.require_writable("making a bucket")
    backend.store.make_bucket(validate_bucket_name(args.bucket))
    print(f"made bucket {show(args.bucket)}")
    return 0


def cmd_rb(args: argparse.Namespace, ctx: Context) -> int:
    backend = ctx.backend
    backend.require_writable("removing a bucket")
    backend.store.remove_bucket(args.bucket)
    print(f"removed bucket {show(args.bucket)}")
    return 0


@_os_errors
def cmd_put(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import BadInput, NotFound

    from ..formatting import human_bytes

    from .output import transfer_progress

    backend = ctx.backend
    backend.require_writable("uploading")
    bucket, key = _location(args.dest)
    src: Path = args.src
    if not src.exists():
        raise NotFound(f"no such file or folder: {src}")
    store = backend.store
    if not store.bucket_exists(bucket):
        raise NotFound(f"bucket {bucket!r} not found; make it with `dlaas-tui store mb {bucket}`")
    if src.is_dir():
        with transfer_progress(f"put {src.name}/") as transfer:
            count = store.put_folder(src, bucket, key, transfer=transfer)
        where = store.uri(bucket, key.rstrip("/") + "/" if key else "")
        print(f"uploaded {count} files ({human_bytes(transfer.total)}) to {show(where)}")
        return 0
    if not key or key.endswith("/"):
        key += src.name
    if not key:
        raise BadInput(f"{args.dest!r}: expected BUCKET/KEY")
    with transfer_progress(f"put {src.name}") as transfer:
        info = store.put_file(src, bucket, key, transfer=transfer)
    print(f"uploaded {human_bytes(info.size)} to {show(store.uri(bucket, key))}")
    return 0


@_os_errors
def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import BadInput, NotFound

    from ..formatting import human_bytes

    from .output import transfer_progress

    bucket, key = _location(args.src)
    store = ctx.backend.store
    dest: Path = args.dest
    if key and not key.endswith("/"):
        try:
            store.stat(bucket, key)
        except (NotFound, BadInput):  # stores report "that key is a folder" either way
            if not store.list(bucket, key + "/", page_size=1).items:
                raise
        else:
            with transfer_progress(f"get {key.rsplit('/', 1)[-1]}") as transfer:
                out = store.get_file(bucket, key, dest, transfer=transfer)
            print(f"downloaded {human_bytes(transfer.total)} to {show(str(out))}")
            return 0
    with transfer_progress(f"get {key or bucket}") as transfer:
        count = store.get_prefix(bucket, key, dest, transfer=transfer)
    if count == 0:
        raise NotFound(f"nothing under {show(store.uri(bucket, key))}")
    print(f"downloaded {count} files ({human_bytes(transfer.total)}) to {show(str(dest))}")
    return 0


@_os_errors
def cmd_rm(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import BadInput, NotFound

    backend = ctx.backend
    backend.require_writable("deleting objects")
    store = backend.store
    plan: dict[str, list[str]] = {}
    # Everything is checked before anything is deleted: one bad location deletes nothing.
    for loc in args.locations:
        bucket, key = _location(loc)
        if args.recursive:
            keys = _keys_under(store, bucket, key)
            if not keys:
                raise NotFound(f"nothing under {show(store.uri(bucket, key))}")
            plan.setdefault(bucket, []).extend(keys)
            continue
        if not key or key.endswith("/"):
            raise BadInput(f"{show(loc)!r} is a bucket or prefix: add --recursive to delete what it holds")
        try:  # a missing object is an error worth seeing, not a silent no-op
            store.stat(bucket, key)
        except (NotFound, BadInput):  # stores report "that key is a folder" either way
            if store.list(bucket, key + "/", page_size=1).items:
                raise BadInput(f"{show(loc)!r} is a prefix: add --recursive to delete what it holds") from None
            raise
        plan.setdefault(bucket, []).append(key)
    deleted = sum(store.delete(bucket, keys) for bucket, keys in plan.items() if keys)
    print(f"deleted {deleted} object{'s' if deleted != 1 else ''}")
    return 0


def _keys_under(store, bucket: str, key: str) -> list[str]:
    """`key` itself if it is an object, and everything under `key/` (never `key2/...`)."""
    from backend.facade import BadInput, NotFound

    keys = []
    if key and not key.endswith("/"):
        try:
            store.stat(bucket, key)
            keys.append(key)
        except (NotFound, BadInput):  # no object of that name, or it is a folder
            pass
        key += "/"
    keys.extend(o.key for o in store.iter_objects(bucket, key))
    return keys


@_os_errors
def cmd_url(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import BadInput

    expires = parse_duration(args.expires)
    bucket, key = _location(args.location)
    if not key or key.endswith("/"):
        raise BadInput(f"{args.location!r}: a URL needs an object key, not a bucket or prefix")
    store = ctx.backend.store
    store.stat(bucket, key)
    print(store.url(bucket, key, expires_s=expires))
    return 0
