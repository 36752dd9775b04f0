"""Index settings from the bank's size (memory.index_type auto, nlist/nprobe/pq_m 0): the rule at 10k-100M
entries, explicit settings kept, the default config building the paper's index bit for bit, and an auto
bank that builds, searches, saves and loads."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
faiss = pytest.importorskip("faiss")

from raserec_core.config import MemoryConfig, load_config  # noqa: E402
from raserec_core.memory import sizing  # noqa: E402
from raserec_core.memory.bank import load_bank, save_bank  # noqa: E402
from raserec_core.memory.sizing import PAPER, IndexSettings, auto_settings, resolve  # noqa: E402

AUTO = ["index_type", "nlist", "nprobe", "pq_m"]


@pytest.mark.parametrize("n", [4992, 10_000, 131_413, 200_000, 300_000, 999_999])
def test_banks_below_a_million_get_the_papers_ivf_128_nprobe_1(n):
    assert auto_settings(n, 64) == PAPER == IndexSettings("ivf", 128, 1, 8)


def test_a_bank_too_small_to_train_128_lists_is_searched_exactly():
    assert auto_settings(4991, 64) == IndexSettings("flat", 128, 1, 8)
    assert auto_settings(10, 16).kind == "flat"


def test_a_million_entries_get_finer_lists_and_more_probes():
    assert auto_settings(1_000_000, 64) == IndexSettings("ivf", 1024, 16, 32)  # 256 MB of float32 vectors


def test_ten_million_entries_get_8_bit_codes_and_a_hundred_million_pq():
    assert auto_settings(10_000_000, 64) == IndexSettings("ivfsq", 4096, 16, 32)  # 2.6 GB as float32, 0.64 GB as SQ8
    big = auto_settings(100_000_000, 64)
    assert big.kind == "ivfpq" and big.pq_m == 32 and big.nlist == 8192
    assert auto_settings(100_000_000, 48).pq_m == 24  # two dimensions per code byte, a divisor of dim
    assert auto_settings(100_000_000, 7).pq_m == 1


def test_explicit_settings_are_kept_and_only_the_zeros_are_chosen():
    settings, chosen = resolve(MemoryConfig(), 200_000, 64)
    assert settings == PAPER and chosen == AUTO
    settings, chosen = resolve(MemoryConfig(index_type="ivfpq", nlist=0, nprobe=3, pq_m=16), 10_000_000, 64)
    assert settings == IndexSettings("ivfpq", 4096, 3, 16) and chosen == ["nlist"]
    # An explicit nlist with nprobe 0 probes the rule's fraction of its own lists (16 of 4096 -> 64 of 16384).
    settings, chosen = resolve(MemoryConfig(index_type="ivf", nlist=16384, nprobe=0, pq_m=8), 10_000_000, 64)
    assert settings == IndexSettings("ivf", 16384, 64, 8) and chosen == ["nprobe"]
    assert resolve(MemoryConfig(index_type="ivf", nlist=4, pq_m=8), 200, 8)[0].nprobe == 1  # never 0


def test_the_default_config_builds_the_papers_index_bit_for_bit(make_bank, make_entries):
    """The banks of the recorded Beauty/Sports runs were built with ivf, nlist 128, nprobe 1, pq_m 8."""
    entries = make_entries(5000, dim=16)  # just over the 4,992 that 128 lists need
    default = make_bank(entries, "auto")
    paper = make_bank(entries, "ivf", nlist=128, nprobe=1, pq_m=8)
    assert load_config().memory == MemoryConfig()  # make_bank("auto") is the default config
    assert default.index.kind == "ivf" and default.index.index.nlist == 128 and default.index.index.nprobe == 1
    assert bytes(faiss.serialize_index(default.index.index)) == bytes(faiss.serialize_index(paper.index.index))
    assert {k: default.meta[k] for k in ("index_type_requested", "nlist", "nprobe", "pq_m")} == \
        {"index_type_requested": "ivf", "nlist": 128, "nprobe": 1, "pq_m": 8}
    assert default.meta["chosen_by_size"] == AUTO and paper.meta["chosen_by_size"] == []


def test_an_auto_bank_above_the_thresholds_builds_searches_and_reloads(monkeypatch, tmp_path, make_bank, make_entries):
    # Toy thresholds, so 6,000 16-dim entries take the large-bank branch: 8-bit codes over √N ≈ 64 lists.
    monkeypatch.setattr(sizing, "SMALL_BANK", 1000)
    monkeypatch.setattr(sizing, "INDEX_MEMORY", 6000 * 16 * 2)
    bank = make_bank(make_entries(6000, dim=16), "auto")
    assert bank.index.kind == "ivfsq" and bank.index.index.nlist == 64 and bank.index.index.nprobe == 16
    q = make_entries(20, dim=16, seed=3).keys
    scores, ids = bank.index.search(q, 10)
    assert ids.shape == (20, 10) and bool((ids >= 0).all()) and bool((scores[:, :-1] >= scores[:, 1:]).all())

    save_bank(bank, tmp_path / "bank")
    loaded = load_bank(tmp_path / "bank", nprobe=0)  # 0: the bank's own nprobe
    assert loaded.index.index.nprobe == 16 and loaded.meta == bank.meta
    assert torch.equal(loaded.index.search(q, 10)[1], ids)
    assert load_bank(tmp_path / "bank", nprobe=2).index.index.nprobe == 2
