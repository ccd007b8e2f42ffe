"""`dlaas-tui store ...` as a user runs it: real subprocesses on the local store of a temporary home."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

# Each test runs the CLI in a subprocess: a second or more each (make test-fast leaves them out).
pytestmark = pytest.mark.slow


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "[bold]b.txt").write_bytes(b"beta" * 100)
    return src


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_ls_on_a_fresh_home_seeds_the_sample_buckets(cli):
    listed = json.loads(ok(cli("store", "ls", "--json")))
    assert {"dlaas-samples", "dlaas-results"} <= {b["name"] for b in listed}
    assert "dlaas-samples" in ok(cli("store", "ls"))


def test_read_only_ls_does_not_seed(cli):
    assert json.loads(ok(cli("--read-only", "store", "ls", "--json"))) == []


def test_mb_put_ls_get_rm_round_trip(cli, tree, tmp_path, dlaas_home):
    assert "made bucket data-1" in ok(cli("store", "mb", "data-1"))
    out = ok(cli("store", "put", str(tree), "data-1/in"))
    assert "uploaded 2 files" in out and "local://data-1/in/" in out
    assert ok(cli("store", "put", str(tree / "a.txt"), "data-1/single/"))

    top = json.loads(ok(cli("store", "ls", "data-1", "--json")))
    assert [(i["key"], i["is_prefix"]) for i in top["items"]] == [("in/", True), ("single/", True)]
    level = json.loads(ok(cli("store", "ls", "data-1/in/", "--json")))
    assert [(i["name"], i["size"]) for i in level["items"]] == [("a.txt", 6), ("sub/", None)]
    text = ok(cli("store", "ls", "data-1/in/"))
    assert "sub/" in text and "folder" in text and "a.txt" in text

    ok(cli("store", "get", "data-1/in", str(tmp_path / "down")))
    assert (tmp_path / "down" / "a.txt").read_text() == "alpha\n"
    assert (tmp_path / "down" / "sub" / "[bold]b.txt").read_bytes() == b"beta" * 100
    ok(cli("store", "get", "data-1/single/a.txt", str(tmp_path)))
    assert (tmp_path / "a.txt").read_text() == "alpha\n"

    url = ok(cli("store", "url", "data-1/in/a.txt", "--expires", "15m")).strip()
    assert url.startswith("file://") and url.endswith("/data-1/in/a.txt")

    assert "is a prefix" in one_line_error(cli("store", "rm", "data-1/in"), 2)
    assert "deleted 3 objects" in ok(cli("store", "rm", "-r", "data-1/in", "data-1/single"))
    assert json.loads(ok(cli("store", "ls", "data-1", "--json")))["items"] == []
    assert "removed bucket data-1" in ok(cli("store", "rb", "data-1"))
    assert "data-1" not in ok(cli("store", "ls"))


def test_ls_limit_pages_and_says_more_follow(cli, dlaas_home):
    from backend.store.local import LocalStore

    store = LocalStore(dlaas_home / "store")
    store.make_bucket("many")
    for i in range(12):
        store.put_bytes("many", f"k{i:02d}", b"x")
    res = cli("store", "ls", "many", "--limit", "5", "--json")
    body = json.loads(ok(res))
    assert [i["key"] for i in body["items"]] == [f"k{i:02d}" for i in range(5)] and body["truncated"]
    res = cli("store", "ls", "many", "--limit", "5")
    assert "more entries follow" in res.stderr and len(ok(res).splitlines()) == 6
    body = json.loads(ok(cli("store", "ls", "many", "--limit", "0", "--json")))
    assert len(body["items"]) == 12 and not body["truncated"]


def test_keys_with_terminal_escapes_are_printed_inert(cli, dlaas_home):
    from backend.store.local import LocalStore

    store = LocalStore(dlaas_home / "store")
    store.make_bucket("esc")
    store.put_bytes("esc", "evil\x1b[31mred\x07.txt", b"x")
    out = ok(cli("store", "ls", "esc"))
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[31mred\\x07.txt" in out
    body = json.loads(ok(cli("store", "ls", "esc", "--json")))
    assert body["items"][0]["key"] == "evil\x1b[31mred\x07.txt"


@pytest.mark.parametrize(
    "args, code, words",
    [
        (("store", "mb", "Bad_Name"), 2, "invalid bucket name 'Bad_Name'"),
        (("store", "ls", "nobucket"), 1, "bucket 'nobucket' not found"),
        (("store", "put", "/no/such/file", "b/k"), 1, "no such file"),
        (("store", "get", "b/../etc/passwd", "x"), 2, "'../etc/passwd'"),
        (("store", "url", "b/k", "--expires", "soon"), 2, "--expires 'soon'"),
        (("store", "url", "b/k", "--expires", "30d"), 2, "between 1s and 7d"),
        (("store", "ls", "b", "--limit", "-1"), 2, "--limit"),
        (("--read-only", "store", "mb", "fine-name"), 1, "read-only"),
        (("--read-only", "store", "rm", "b/k"), 1, "read-only"),
        (("--read-only", "store", "put", __file__, "b/k"), 1, "read-only"),
        (("--read-only", "store", "rb", "b"), 1, "read-only"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(cli, args, code, words):
    assert words in one_line_error(cli(*args), code)


def test_missing_object_names_the_key(cli, dlaas_home):
    from backend.store.local import LocalStore

    LocalStore(dlaas_home / "store").make_bucket("there")
    assert "'gone.txt'" in one_line_error(cli("store", "get", "there/gone.txt", "x"), 1)
    assert "'gone.txt'" in one_line_error(cli("store", "rm", "there/gone.txt"), 1)
    assert "store mb" in one_line_error(cli("store", "put", __file__, "absent-bucket/k"), 1)


def test_an_os_error_is_one_line(cli, tree, dlaas_home, tmp_path):
    from backend.store.local import LocalStore

    store = LocalStore(dlaas_home / "store")
    store.make_bucket("bk1")
    store.put_bytes("bk1", "f", b"x")
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    assert "store get" in one_line_error(cli("store", "get", "bk1/f", str(blocker / "inside")), 1)
