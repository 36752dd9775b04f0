"""The memory-bank artifact: save/load round trips, integrity checks, the manifest, and a bank built by
``raserec index`` from the tiny model."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.memory.bank import MemoryBankError, load_bank, save_bank  # noqa: E402


def same_entries(a, b) -> bool:
    return all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


def queries(n: int = 12, dim: int = 8, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, 4, (n,), generator=g), torch.randint(1, 6, (n,), generator=g)


@pytest.mark.parametrize("index_type", ["brute", "flat", "ivf"])
def test_save_load_round_trip_gives_identical_entries_and_retrieval(index_type, tmp_path, make_bank, make_entries):
    bank = make_bank(make_entries(100), index_type, nlist=2, nprobe=1)  # ivf: 100 >= 39 x 2
    assert bank.index.kind == index_type
    save_bank(bank, tmp_path / "bank")
    loaded = load_bank(tmp_path / "bank")

    assert same_entries(bank.entries, loaded.entries)
    assert loaded.entries.keys.dtype == torch.float32 and loaded.entries.user.dtype == torch.long
    assert loaded.index.kind == index_type and loaded.index.ntotal == 100
    assert loaded.user_ids.tolist() == bank.user_ids.tolist()
    assert loaded.item_ids.tolist() == bank.item_ids.tolist()
    assert torch.equal(loaded.users.n_seen, bank.users.n_seen)
    assert [loaded.users.last(u).tolist() for u in range(4)] == [[1, 2], [2, 3], [3, 4], [4, 5]]
    assert {k: v.tolist() for k, v in loaded.added.items()} == {"user": [], "item": [], "time": []}
    assert loaded.meta == bank.meta

    h, u, length = queries()
    a = bank.retriever()(h, u, length, 5)
    b = loaded.retriever()(h, u, length, 5)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.mask, b.mask)
    assert a.mask.any()


def test_manifest_records_counts_dimension_index_type_and_hashes(tmp_path, make_bank, make_entries):
    bank = make_bank(make_entries(30, dim=8), "flat")
    manifest = save_bank(bank, tmp_path / "bank")
    on_disk = json.loads((tmp_path / "bank" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["entries"] == 30
    assert manifest["dim"] == 8
    assert manifest["users"] == 4
    assert manifest["index_type_built"] == "flat" and manifest["index_type_requested"] == "flat"
    assert manifest["index_file"] == "index.faiss"
    assert manifest["encoder_sha256"] == "e" * 64 and manifest["dataset_fingerprint"] == "f" * 64
    assert manifest["max_len"] == 5 and manifest["interactions_added"] == 0
    # every data file is hashed: the leakage filter's metadata and the duplicate guard included
    assert set(manifest["sha256"]) == {"keys.npy", "values.npy", "index.faiss", "entries.parquet", "users.parquet",
                                       "items.parquet", "user_state.parquet", "added.parquet"}
    names = {p.name for p in (tmp_path / "bank").iterdir()}
    assert names == {"manifest.json", "keys.npy", "values.npy", "entries.parquet", "index.faiss", "users.parquet",
                     "items.parquet", "user_state.parquet", "added.parquet"}


def test_manifest_of_a_fallback_index_names_the_index_actually_built(tmp_path, make_bank, make_entries):
    bank = make_bank(make_entries(20), "ivf", nlist=4, allow_fallback=True)  # 20 < 39 x 4
    manifest = save_bank(bank, tmp_path / "bank")
    assert manifest["index_type_built"] == "flat" and manifest["index_type_requested"] == "ivf"
    assert manifest["allow_fallback"] is True
    # a grown bank is indexed under the same rule (no error for the still too small bank)
    assert load_bank(tmp_path / "bank").with_entries(make_entries(5)).index.kind == "flat"


def test_a_bank_too_small_for_its_index_type_is_an_error(make_bank, make_entries):
    with pytest.raises(MemoryBankError, match="20 entries, fewer than the 156 that ivf with nlist=4 needs"):
        make_bank(make_entries(20), "ivf", nlist=4)


@pytest.mark.parametrize("name", ["keys.npy", "values.npy", "index.faiss"])
def test_tampered_file_is_rejected(name, tmp_path, make_bank, make_entries):
    folder = tmp_path / "bank"
    save_bank(make_bank(make_entries(30), "flat"), folder)
    if name.endswith(".npy"):
        arr = np.load(folder / name)
        arr[0, 0] += 1.0
        np.save(folder / name, arr)
    else:
        data = bytearray((folder / name).read_bytes())
        data[-1] ^= 0xFF
        (folder / name).write_bytes(bytes(data))
    with pytest.raises(MemoryBankError, match=rf"{name}: content does not match manifest.json"):
        load_bank(folder)


def test_truncated_manifest_names_the_file(tmp_path, make_bank, make_entries):
    folder = tmp_path / "bank"
    save_bank(make_bank(make_entries(10), "brute"), folder)
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(MemoryBankError, match="not valid JSON") as err:
        load_bank(folder)
    assert str(folder / "manifest.json") in str(err.value)


def test_missing_listed_file_names_the_file(tmp_path, make_bank, make_entries):
    folder = tmp_path / "bank"
    save_bank(make_bank(make_entries(10), "brute"), folder)
    (folder / "entries.parquet").unlink()
    with pytest.raises(MemoryBankError, match="entries.parquet: missing"):
        load_bank(folder)


def test_not_a_bank_is_rejected(tmp_path):
    with pytest.raises(MemoryBankError, match="no manifest.json"):
        load_bank(tmp_path)


def test_other_format_version_is_rejected(tmp_path, make_bank, make_entries):
    folder = tmp_path / "bank"
    save_bank(make_bank(make_entries(10), "brute"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(MemoryBankError, match="format_version 99, expected 1"):
        load_bank(folder)


def test_saving_over_an_existing_bank_needs_replace(tmp_path, make_bank, make_entries, tree_digest):
    folder = tmp_path / "bank"
    save_bank(make_bank(make_entries(10), "brute"), folder)
    before = tree_digest(folder)
    with pytest.raises(FileExistsError, match="already exists"):
        save_bank(make_bank(make_entries(12), "brute"), folder)
    assert tree_digest(folder) == before
    save_bank(make_bank(make_entries(12), "brute"), folder, replace_existing=True)
    assert len(load_bank(folder)) == 12


def test_with_entries_builds_a_larger_bank_and_leaves_the_saved_one_alone(tmp_path, make_bank, make_entries, tree_digest):
    folder = tmp_path / "bank"
    bank = make_bank(make_entries(40, seed=1), "flat")
    save_bank(bank, folder)
    before = tree_digest(folder)
    loaded = load_bank(folder)
    extra = make_entries(15, seed=2)

    bigger = loaded.with_entries(extra)

    assert len(bigger) == 55 and bigger.index.ntotal == 55
    assert torch.equal(bigger.entries.keys[:40], loaded.entries.keys)
    assert torch.equal(bigger.entries.keys[40:], extra.keys)
    assert torch.equal(bigger.entries.target[40:], extra.target)
    assert len(loaded) == 40 and loaded.index.ntotal == 40  # the original object is untouched
    assert bigger.index is not loaded.index
    assert tree_digest(folder) == before
    # the extra entries are retrievable: each extra key finds itself (as another user's entry)
    r = bigger.retriever()(extra.keys, torch.full((15,), 99), torch.ones(15, dtype=torch.long), 1)
    assert r.ids.flatten().tolist() == list(range(40, 55))


def test_bank_built_by_the_cli(flat_bank_dir, trained_model_dir, wide_dataset_dir):
    from raserec_core.data import read_dataset
    from raserec_core.models.checkpoint import file_sha256, load_encoder

    bank = load_bank(flat_bank_dir)
    ds = read_dataset(wide_dataset_dir)
    manifest = json.loads((flat_bank_dir / "manifest.json").read_text())
    train = ds.splits["train"]
    assert manifest["entries"] == len(bank) == len(train) == 150
    assert manifest["dim"] == 16 and manifest["index_type_built"] == "flat"
    assert manifest["encoder_sha256"] == file_sha256(trained_model_dir / "encoder.pt")
    assert manifest["dataset_fingerprint"] == ds.fingerprint and manifest["max_len"] == 5
    # one entry per training instance, with its metadata
    assert bank.entries.target.tolist() == train.target.tolist()
    assert bank.entries.user.tolist() == train.user.tolist()
    assert bank.entries.position.tolist() == train.position.tolist()
    assert bank.entries.length.tolist() == np.diff(train.offsets).tolist()
    assert bank.entries.length.max().item() <= 5
    # keys: the frozen encoder's un-normalised representation; values: the target item embeddings
    encoder, _ = load_encoder(trained_model_dir, "cpu")
    rows = [0, 7, 149]
    with torch.no_grad():
        for r in rows:
            hist = torch.from_numpy(train.history(r))[None]
            h = encoder(hist, torch.tensor([hist.shape[1]]))
            torch.testing.assert_close(bank.entries.keys[r], h[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bank.entries.values, encoder.item_table[bank.entries.target])
    assert not torch.allclose(bank.entries.keys.norm(dim=1), torch.ones(150))  # stored un-normalised
    # user state: each user's full length and last 5 items (test history + test target)
    test = ds.splits["test"]
    for row in (0, 5):
        u = int(test.user[row])
        assert bank.users.n_seen[u].item() == test.position[row] + 1
        assert bank.users.last(u).tolist() == np.append(test.history(row), test.target[row])[-5:].tolist()
