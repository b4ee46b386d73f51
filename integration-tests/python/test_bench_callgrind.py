"""bench/callgrind.py's pure parts: reading a callgrind dump and the variants it knows."""
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import bench  # noqa: E402
import callgrind  # noqa: E402


def test_totals_reads_the_dumps_total(tmp_path):
    dump = tmp_path / "x.callgrind.1.1"
    dump.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n3 17\n\ntotals: 123456\n")
    assert callgrind.totals(dump) == 123456
    dump.write_text("events: Ir\nsummary: 42\n")
    assert callgrind.totals(dump) == 42


def test_a_dump_without_totals_is_an_error(tmp_path):
    dump = tmp_path / "empty"
    dump.write_text("")
    with pytest.raises(RuntimeError):
        callgrind.totals(dump)


def test_every_bench_variant_it_names_exists_and_c_variants_present_the_key():
    for name in ["b", "g", "f0", "c", "c0", *bench.EXTRA]:
        assert name in callgrind.VARIANTS, name
    for name, (_, _, kind, headers) in callgrind.VARIANTS.items():
        assert kind in ("none", "noop", "filter")
        assert bool(headers) == name.startswith("c"), name
