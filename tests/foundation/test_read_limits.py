"""Reading a small file under a large limit reserves the file's size, not the limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, sys.argv[2])
    from medclip_cli.errors import DataError
    from medclip_cli.files import read_regular
    # 1 GiB of address space more than the interpreter uses: a 4 GiB reservation cannot fit.
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), hard))
    data = read_regular(sys.argv[1], DataError, "manifest", limit=4 << 30)
    print(len(data))
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_a_small_manifest_reads_under_an_address_space_limit(tmp_path):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("image,caption\n" + "a.png,a caption\n" * 1000)
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(manifest), str(REPO)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout) == manifest.stat().st_size


def test_the_limit_still_refuses_a_larger_file(tmp_path):
    from medclip_cli.errors import DataError
    from medclip_cli.files import read_regular

    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(DataError, match="more than the limit of 4,096"):
        read_regular(big, DataError, "manifest", limit=4096)
    assert read_regular(big, DataError, "manifest", limit=5000) == b"x" * 5000
