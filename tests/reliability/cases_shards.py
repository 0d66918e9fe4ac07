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

def _set(env: Env, kind: str):
    # A global limit option sets its variable for the process: registered here so the case undoes it.
    env.monkeypatch.setenv("MEDCLIP_MAX_IMAGE_BYTES", str(1 << 30))
    return shards.shard_set(env.p("shards"), kind)


def _finetune(env: Env, kind: str, *extra: str, options=()) -> list[str]:
    return [*options, *finetune(env, *extra, data=_set(env, kind))]


def _evaluate(env: Env, kind: str, options=()) -> list[str]:
    return [*options, *evaluate(env, data=_set(env, kind))]


def _check(env: Env, kind: str, options=()) -> list[str]:
    return [*options, "data", "check", str(_set(env, kind))]


def _rows() -> list[Case]:
    rows = []
    for kind, what, line, options in shards.KINDS:
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
             lambda env: _check(env, "truncated"), 1, shards.CUT),
        Case("shard-truncated-finetune", "data sets", "a shard cut off inside a member", "finetune --data shards/",
             lambda env: _finetune(env, "truncated"), 1, shards.CUT, output="run"),
        Case("shard-truncated-stream", "data sets", "a shard cut off inside a member, streamed (its rest skipped, one log line)",
             "finetune --data shards/ --stream", lambda env: _finetune(env, "truncated", "--stream"), 0,
             "unreadable after 4 sample(s) (truncated in member 'cut.png'); the rest of the shard is skipped"),
        Case("shard-truncated-evaluate", "data sets", "a shard cut off inside a member", "evaluate --data shards/",
             lambda env: _evaluate(env, "truncated"), 1, shards.CUT),
    ]  # fmt: skip
    return rows


SHARD_CASES: list[Case] = _rows()
