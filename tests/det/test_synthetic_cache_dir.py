"""Where the synthetic LVIS-format dataset is generated: the user's cache, never next to the code."""
from pathlib import Path

from lda_det.data import synthetic_lt

ROOT_NAME = f"synthetic_lt_{synthetic_lt.VERSION}"


def test_lda_datasets_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("LDA_DATASETS", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Path(synthetic_lt.default_root()) == tmp_path / "mine" / ROOT_NAME


def test_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("LDA_DATASETS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Path(synthetic_lt.default_root()) == tmp_path / "xdg" / "lda" / ROOT_NAME


def test_home_cache_without_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LDA_DATASETS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # set but empty counts as unset (XDG base directory spec)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Path(synthetic_lt.default_root()) == tmp_path / ".cache" / "lda" / ROOT_NAME
