"""Hostile WebDataset shards, as rows of the same table (appended to ``CASES`` in cases.py): each bad
shard through ``data check``, ``finetune`` (cached), ``finetune --stream`` and ``evaluate``.

Both ways of reading shards take their members from one reader (medclip_cli/data/tar_members.py),
so each bad member gives the same line on every path: a sample with a link, device, ``..`` or
absolute member, or a member over a limit, is skipped (listed by ``data check``, one warning line
elsewhere; ``--stream --strict`` stops at it); a tar cut off inside a member is refused (the cached
path reads every shard first) or its rest skipped (``--stream``; ``--strict`` stops). A streamed
``--strict`` run stops mid-run (its run folder started, which a table row cannot allow), and what
is never written anywhere: ``test_shard_hostile.py``.
"""

from __future__ import annotations

from tests.reliability import inputs_shards as shards
from tests.reliability.cases import Case, Env, evaluate, finetune

_SAMPLE = "sample skipped (re-create the shard"
_CUT = "not a readable tar shard (truncated in member 'cut.png')"
# (kind, the input in words, the line every path shows, extra global options)
_KINDS = [
    ("symlink", "a symlink member evil.png -> /etc/passwd", "member 'evil.png': a symbolic link in the tar, not read; " + _SAMPLE, []),
    ("hardlink", "a hard-link member evil.png -> 000001.png", "member 'evil.png': a hard link in the tar, not read; " + _SAMPLE, []),
    ("device", "a character-device member evil.png (1, 3)", "member 'evil.png': not a regular file in the tar, not read; " + _SAMPLE, []),
    ("fifo", "a FIFO member evil.png", "member 'evil.png': not a regular file in the tar, not read; " + _SAMPLE, []),
    ("dotdot", "members named ../../pwned.png and .txt", "member '../../pwned.png': an absolute member name or one with '..'; " + _SAMPLE, []),
    ("absolute", "members named /tmp/medclip-pwned.png and .txt", "member '/tmp/medclip-pwned.png': an absolute member name or one with '..'", []),
    ("big-image", "an image member of 20 KB under --max-image-bytes 10000", "member 'big.png': 20,", ["--max-image-bytes", "10000"]),
    ("big-caption", "a .txt member of 4,000,001 bytes (over the caption limit)",
     "member 'long.txt': 4,000,001 bytes, over the 4,000,000-byte limit of a caption member; skipped", []),
]


def _set(env: Env, kind: str):
    return shards.shard_set(env.p("shards"), kind)


def _finetune(env: Env, kind: str, *extra: str, options=()) -> list[str]:
    return [*options, *finetune(env, *extra, data=_set(env, kind))]


def _evaluate(env: Env, kind: str, options=()) -> list[str]:
    return [*options, *evaluate(env, data=_set(env, kind))]


def _check(env: Env, kind: str, options=()) -> list[str]:
    return [*options, "data", "check", str(_set(env, kind))]


def _rows() -> list[Case]:
    rows = []
    for kind, what, line, options in _KINDS:
        shown = " ".join(options) + " " if options else ""
        rows += [
            Case(f"shard-{kind}-check", "data sets", f"a shard with {what}", f"{shown}data check shards/",
                 lambda env, k=kind, o=options: _check(env, k, o), 1, line, report=True),
            Case(f"shard-{kind}-finetune", "data sets", f"a shard with {what} (sample skipped, one log line)",
                 f"{shown}finetune --data shards/", lambda env, k=kind, o=options: _finetune(env, k, options=o), 0, line),
            Case(f"shard-{kind}-stream", "data sets", f"a shard with {what}, streamed (sample skipped, one log line)",
                 f"{shown}finetune --data shards/ --stream --shuffle-buffer 1",
                 lambda env, k=kind, o=options: _finetune(env, k, "--stream", "--shuffle-buffer", "1", options=o), 0, line),
            Case(f"shard-{kind}-evaluate", "data sets", f"a shard with {what} (sample skipped, one warning)",
                 f"{shown}evaluate --data shards/", lambda env, k=kind, o=options: _evaluate(env, k, o), 0, line),
        ]  # fmt: skip
    rows += [
        Case("shard-truncated-check", "data sets", "a shard cut off inside a member", "data check shards/",
             lambda env: _check(env, "truncated"), 1, _CUT),
        Case("shard-truncated-finetune", "data sets", "a shard cut off inside a member", "finetune --data shards/",
             lambda env: _finetune(env, "truncated"), 1, _CUT, output="run"),
        Case("shard-truncated-stream", "data sets", "a shard cut off inside a member, streamed (its rest skipped, one log line)",
             "finetune --data shards/ --stream", lambda env: _finetune(env, "truncated", "--stream"), 0,
             "unreadable after 4 sample(s) (truncated in member 'cut.png'); the rest of the shard is skipped"),
        Case("shard-truncated-evaluate", "data sets", "a shard cut off inside a member", "evaluate --data shards/",
             lambda env: _evaluate(env, "truncated"), 1, _CUT),
    ]  # fmt: skip
    return rows


SHARD_CASES: list[Case] = _rows()
