import pytest

from editdecay.io import atomic_write


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, lambda p: p.write_text("first"))
    assert target.read_text() == "first"

    def broken(p):
        p.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "first"  # the old content survives
    assert [f.name for f in target.parent.iterdir()] == ["out.txt"]  # no temporary left behind
