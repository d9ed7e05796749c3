"""The htmx the pages load ships in the repository; it must be the pinned release, byte for byte."""

import hashlib
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "static" / "vendor"


def test_vendored_htmx_matches_its_pinned_checksum():
    sums = [line.split() for line in (VENDOR / "SHA256SUMS").read_text().splitlines()
            if line and not line.startswith("#")]
    assert sums == [["d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
                     "htmx.min.js"]]
    for digest, name in sums:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest
