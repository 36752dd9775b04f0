"""Dynamic memory: ``raserec memory add`` appends a held-back slice of interactions to a bank built from
the tiny model, without retraining or rebuilding the index, and refuses to add the same slice twice."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
faiss = pytest.importorskip("faiss")

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.memory.bank import MemoryBankError, load_bank  # noqa: E402
from raserec_core.models.checkpoint import load_encoder  # noqa: E402

# The held-back slice: two new items for user 1 (listed out of time order), one for user 2, and a new user
# with four items in an order the (consecutive) training sequences never show.
SLICE = """user_id,item_id,timestamp
1,30,101
new,7,10
1,29,100
2,40,5
new,2,11
new,55,12
new,13,13
"""
NEW_ITEMS = ["7", "2", "55", "13"]


def run_cli(args: list[str]) -> tuple[int, dict | None]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(args)
    return rc, (json.loads(out.getvalue()) if rc == 0 else None)


def sequences(wide_dataset_dir) -> dict[str, list[str]]:
    """Each user's full item sequence, read from the session dataset's source file."""
    lines = (wide_dataset_dir.parent / "wide.txt").read_text().split("\n")
    return {p[0]: p[1:] for p in (line.split() for line in lines) if p}


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("slice") / "slice.csv"
    path.write_text(SLICE)
    return path


def weight_digests(tree_digest, *folders) -> dict:
    return {f"{folder}/{name}": digest for folder in folders for name, digest in tree_digest(folder).items()
            if name.endswith(".pt")}


@pytest.fixture(scope="module")
def added(tmp_path_factory, flat_bank_dir, finetuned_dir, trained_model_dir, slice_csv, tiny_args, tree_digest):
    """The slice added by the CLI to a copy of the flat bank; the digests of everything before."""
    before = {
        "bank": tree_digest(flat_bank_dir),
        "weights": weight_digests(tree_digest, finetuned_dir, trained_model_dir),
    }
    out = tmp_path_factory.mktemp("added") / "bank"
    rc, report = run_cli(["memory", "add", "--memory", str(flat_bank_dir), "--model", str(finetuned_dir),
                          "--interactions", str(slice_csv), "--output", str(out), *tiny_args()])
    assert rc == 0
    return out, report, before


def test_report_counts_the_new_entries(added):
    _, report, _ = added
    # user 1: 2 entries, user 2: 1, the new user: 3 (its first item has no prefix)
    assert report == {"interactions": 7, "skipped_unknown_items": 0, "entries_added": 6, "new_users": 1,
                      "users_extended": 2, "entries_total": 156}


def test_bank_grows_by_exactly_the_new_instances(added, flat_bank_dir):
    out, _, _ = added
    old, new = load_bank(flat_bank_dir), load_bank(out)
    assert len(old) == 150 and len(new) == 156 and new.index.ntotal == 156
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["entries"] == 156 and manifest["interactions_added"] == 7 and manifest["users"] == 31
    # the old entries are kept as they were, with their ids
    for name in ("keys", "values", "user", "length", "position", "target"):
        assert torch.equal(getattr(new.entries, name)[:150], getattr(old.entries, name))


def test_new_entries_are_keyed_by_user_and_continuing_position(added, wide_dataset_dir):
    out, _, _ = added
    bank = load_bank(out)
    seqs = sequences(wide_dataset_dir)
    uidx = {raw: i for i, raw in enumerate(bank.user_ids.tolist())}
    iidx = {raw: i for i, raw in enumerate(bank.item_ids.tolist())}
    assert bank.user_ids[-1] == "new" and len(bank.user_ids) == 31
    n1, n2 = len(seqs["1"]), len(seqs["2"])
    e = bank.entries.select(torch.arange(150, 156))
    got = sorted(zip(e.user.tolist(), e.position.tolist(), e.length.tolist(), e.target.tolist()))
    want = sorted([
        (uidx["1"], n1, 5, iidx["29"]),  # time 100 comes before time 101
        (uidx["1"], n1 + 1, 5, iidx["30"]),
        (uidx["2"], n2, 5, iidx["40"]),
        (uidx["new"], 1, 1, iidx["2"]),
        (uidx["new"], 2, 2, iidx["55"]),
        (uidx["new"], 3, 3, iidx["13"]),
    ])
    assert got == want
    # the user state continues too
    assert bank.users.n_seen[uidx["1"]].item() == n1 + 2
    assert [bank.item_ids[i] for i in bank.users.last(uidx["1"]).tolist()] == (seqs["1"] + ["29", "30"])[-5:]
    assert bank.users.n_seen[uidx["new"]].item() == 4
    assert [bank.item_ids[i] for i in bank.users.last(uidx["new"]).tolist()] == NEW_ITEMS


def test_new_entries_hold_the_encoded_prefix_and_target_embedding(added, wide_dataset_dir, trained_model_dir):
    out, _, _ = added
    bank = load_bank(out)
    encoder, _ = load_encoder(trained_model_dir, "cpu")
    seqs = sequences(wide_dataset_dir)
    iidx = {raw: i for i, raw in enumerate(bank.item_ids.tolist())}
    uidx = {raw: i for i, raw in enumerate(bank.user_ids.tolist())}
    prefixes = {
        (uidx["1"], len(seqs["1"])): seqs["1"][-5:],
        (uidx["1"], len(seqs["1"]) + 1): (seqs["1"] + ["29"])[-5:],
        (uidx["new"], 3): ["7", "2", "55"],
    }
    with torch.no_grad():
        for row in range(150, 156):
            key = (int(bank.entries.user[row]), int(bank.entries.position[row]))
            if key in prefixes:
                hist = torch.tensor([[iidx[i] for i in prefixes[key]]])
                h = encoder(hist, torch.tensor([hist.shape[1]]))[0]
                torch.testing.assert_close(bank.entries.keys[row], h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bank.entries.values, encoder.item_table[bank.entries.target])


def test_retrieval_for_an_affected_user_changes(added, flat_bank_dir, trained_model_dir):
    out, _, _ = added
    old, new = load_bank(flat_bank_dir), load_bank(out)
    encoder, _ = load_encoder(trained_model_dir, "cpu")
    iidx = {raw: i for i, raw in enumerate(new.item_ids.tolist())}
    with torch.no_grad():
        h = encoder(torch.tensor([[iidx["7"], iidx["2"], iidx["55"]]]), torch.tensor([3]))
    u1 = torch.tensor([int(np.flatnonzero(new.user_ids == "1")[0])])
    before = old.retriever()(h, u1, torch.tensor([3]), 4)
    after = new.retriever()(h, u1, torch.tensor([3]), 4)
    # the new user's entry (7, 2, 55) -> 13 has the very same key: it is now retrieved first
    entry = int(((new.entries.user == len(new.user_ids) - 1) & (new.entries.position == 3)).nonzero())
    assert entry >= 150
    assert after.ids[0, 0].item() == entry
    assert entry not in before.ids.flatten().tolist()
    assert after.mask.all() and before.mask.all()
    # the new user itself may retrieve its own shorter prefixes, never the entry of its own length
    new_user = torch.tensor([len(new.user_ids) - 1])
    own = new.retriever()(h, new_user, torch.tensor([3]), 156)
    ids = own.ids[own.mask].tolist()
    assert entry not in ids
    assert {i for i in range(150, 156) if new.entries.user[i] == new_user.item() and new.entries.length[i] < 3} <= set(ids)


def test_recommendations_for_an_affected_user_change(added, flat_bank_dir, finetuned_dir):
    from raserec_core.recommender import Recommender

    out, _, _ = added
    history = [["7", "2", "55"]]
    items_b, scores_b = Recommender.load(finetuned_dir, flat_bank_dir, "cpu").recommend(history, ["1"], k=60, exclude_history=False)
    items_a, scores_a = Recommender.load(finetuned_dir, out, "cpu").recommend(history, ["1"], k=60, exclude_history=False)
    assert len(items_a[0]) == len(items_b[0]) == 60
    assert sorted(items_a[0]) == sorted(items_b[0])
    by_item_b = dict(zip(items_b[0], scores_b[0]))
    by_item_a = dict(zip(items_a[0], scores_a[0]))
    diff = max(abs(by_item_a[i] - by_item_b[i]) for i in by_item_a)
    assert diff > 1e-4  # the tiny RAM is weak, but its first memory is now another one
    # a history whose memories the slice does not touch is recommended exactly as before
    rec = Recommender.load(finetuned_dir, out, "cpu")

    def untouched(history):  # none of the new entries (ids from 150) is among its memories
        h = rec.encoder(*rec._encode_histories([history]))
        r = rec.bank.retriever()(h, torch.tensor([rec.user_index["9"]]), torch.tensor([len(history)]), rec.top_k)
        return bool(r.mask.all() and (r.ids < 150).all())

    candidates = [[str(i) for i in range(start, start + 5)] for start in (20, 30, 40, 60, 80, 100, 120)]
    far = [next(h for h in candidates if untouched(h))]  # StopIteration: the precondition holds for none
    assert Recommender.load(finetuned_dir, out, "cpu").recommend(far, ["9"], k=60) == \
        Recommender.load(finetuned_dir, flat_bank_dir, "cpu").recommend(far, ["9"], k=60)


def test_model_weights_and_the_source_bank_are_byte_identical(added, flat_bank_dir, finetuned_dir, trained_model_dir,
                                                              tree_digest):
    _, _, before = added
    weights = weight_digests(tree_digest, finetuned_dir, trained_model_dir)
    assert weights == before["weights"]
    assert {k.rsplit("/", 1)[1] for k in weights} >= {"encoder.pt", "ram.pt"}
    assert tree_digest(flat_bank_dir) == before["bank"]


def test_adding_the_same_slice_twice_is_refused_and_changes_nothing(added, finetuned_dir, slice_csv, tiny_args,
                                                                    tree_digest, capsys):
    out, _, _ = added
    before = tree_digest(out)
    rc = main(["memory", "add", "--memory", str(out), "--model", str(finetuned_dir), "--interactions",
               str(slice_csv), "--output", str(out), *tiny_args()])
    assert rc == 2
    err = capsys.readouterr().err
    assert "raserec memory: error:" in err
    assert "row 0: interaction (user '1', item '30', time 101) is already in the memory bank; nothing was added" in err
    assert str(slice_csv) in err
    assert tree_digest(out) == before
    assert len(load_bank(out)) == 156


def test_a_slice_overlapping_an_added_one_is_refused_whole(added, finetuned_dir, tiny_args, tmp_path, tree_digest,
                                                           capsys):
    out, _, _ = added
    part = tmp_path / "part.csv"
    part.write_text("user_id,item_id,timestamp\n3,5,500\nnew,55,12\n")  # a fresh row, then an added one
    before = tree_digest(out)
    target = tmp_path / "grown"
    rc = main(["memory", "add", "--memory", str(out), "--model", str(finetuned_dir), "--interactions", str(part),
               "--output", str(target), *tiny_args()])
    assert rc == 2
    assert "row 1: interaction (user 'new', item '55', time 12) is already in the memory bank" in capsys.readouterr().err
    assert not target.exists()
    assert tree_digest(out) == before


def test_unknown_items_are_skipped_and_counted(added, finetuned_dir, tiny_args, tmp_path):
    out, _, _ = added
    part = tmp_path / "unknown.csv"
    part.write_text("user_id,item_id,timestamp\n3,999,600\n3,5,601\n4,abc,602\n")
    rc, report = run_cli(["memory", "add", "--memory", str(out), "--model", str(finetuned_dir), "--interactions",
                          str(part), "--output", str(tmp_path / "grown"), *tiny_args()])
    assert rc == 0
    assert report["skipped_unknown_items"] == 2
    assert report["entries_added"] == 1 and report["interactions"] == 3 and report["users_extended"] == 1
    bank = load_bank(tmp_path / "grown")
    assert len(bank) == 157
    assert bank.item_ids[int(bank.entries.target[-1])] == "5"
    assert bank.added["item"].tolist()[-1:] == ["5"]  # only the known interaction is recorded


def test_strict_makes_unknown_items_an_error(added, finetuned_dir, tiny_args, tmp_path, capsys):
    out, _, _ = added
    part = tmp_path / "unknown.csv"
    part.write_text("user_id,item_id,timestamp\n3,5,700\n3,999,701\n")
    target = tmp_path / "grown"
    rc = main(["memory", "add", "--memory", str(out), "--model", str(finetuned_dir), "--interactions", str(part),
               "--output", str(target), "--strict", *tiny_args()])
    assert rc == 2
    err = capsys.readouterr().err
    assert "row 1: item '999' is unknown to the model (--strict)" in err
    assert not target.exists()


def test_a_new_users_first_item_gives_no_entry_and_later_items_continue(flat_bank_dir, trained_model_dir, tmp_path):
    from raserec_core.config import Config
    from raserec_core.memory_steps import memory_add

    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("solo 9\n")  # sequence files: items in time order
    second.write_text("solo 10 11\n")
    r1 = memory_add(flat_bank_dir, trained_model_dir, first, tmp_path / "b1", Config(), "cpu")
    assert r1["entries_added"] == 0 and r1["new_users"] == 1 and r1["entries_total"] == 150
    b1 = load_bank(tmp_path / "b1")
    solo = int(np.flatnonzero(b1.user_ids == "solo")[0])
    assert b1.users.n_seen[solo].item() == 1 and b1.users.last(solo).tolist() == [9]
    r2 = memory_add(tmp_path / "b1", trained_model_dir, second, tmp_path / "b2", Config(), "cpu")
    assert r2["entries_added"] == 2 and r2["new_users"] == 0 and r2["users_extended"] == 1
    b2 = load_bank(tmp_path / "b2")
    e = b2.entries.select(torch.arange(150, 152))
    assert e.user.tolist() == [solo, solo]
    assert e.position.tolist() == [1, 2] and e.length.tolist() == [1, 2] and e.target.tolist() == [10, 11]


def test_adding_to_an_ivf_bank_keeps_the_trained_quantizer(wide_dataset_dir, trained_model_dir, slice_csv, tiny_args,
                                                          tmp_path):
    ivf_dir = tmp_path / "ivf"
    rc, manifest = run_cli(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                            str(ivf_dir), "--index-type", "ivf", "--nlist", "2", "--nprobe", "2", *tiny_args()])
    assert rc == 0 and manifest["index_type_built"] == "ivf" and manifest["nlist"] == 2  # 150 >= 39 x 2
    old = load_bank(ivf_dir)
    ivf_old = faiss.downcast_index(old.index.index)
    centroids = ivf_old.quantizer.reconstruct_n(0, 2)
    ivf_old.make_direct_map()
    old_vectors = ivf_old.reconstruct_n(0, 150)

    rc, report = run_cli(["memory", "add", "--memory", str(ivf_dir), "--model", str(trained_model_dir),
                          "--interactions", str(slice_csv), "--output", str(ivf_dir), *tiny_args()])  # in place
    assert rc == 0 and report["entries_added"] == 6
    new = load_bank(ivf_dir)
    assert new.index.kind == "ivf" and new.index.ntotal == 156
    ivf_new = faiss.downcast_index(new.index.index)
    assert isinstance(ivf_new, faiss.IndexIVFFlat) and ivf_new.nlist == 2
    np.testing.assert_array_equal(ivf_new.quantizer.reconstruct_n(0, 2), centroids)
    ivf_new.make_direct_map()
    np.testing.assert_array_equal(ivf_new.reconstruct_n(0, 150), old_vectors)  # old vectors keep their ids
    new_vectors = ivf_new.reconstruct_n(150, 6)
    want = torch.nn.functional.normalize(new.entries.keys[150:], dim=1).numpy()
    np.testing.assert_allclose(new_vectors, want, atol=1e-6)
    assert json.loads((ivf_dir / "manifest.json").read_text())["index_type_built"] == "ivf"


def test_bank_of_another_encoder_is_refused(flat_bank_dir, finetuned_dir, tmp_path):
    import shutil

    from raserec_core.config import Config
    from raserec_core.memory_steps import StepError, memory_add
    from raserec_core.recommender import Recommender

    other = tmp_path / "other_bank"
    shutil.copytree(flat_bank_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "encoder_sha256": "0" * 64}))
    part = tmp_path / "p.csv"
    part.write_text("user_id,item_id,timestamp\n3,5,1\n")
    with pytest.raises(StepError, match=r"other_bank: memory bank built by another encoder \(000000000000"):
        memory_add(other, finetuned_dir, part, tmp_path / "out", Config(), "cpu")
    assert not (tmp_path / "out").exists()
    with pytest.raises(MemoryBankError, match="built by another encoder than"):
        Recommender.load(finetuned_dir, other, "cpu")


def test_a_user_too_short_for_the_split_is_not_in_the_dataset_and_comes_back_as_new(trained_model_dir, tmp_path):
    from raserec_core.config import MemoryConfig
    from raserec_core.data import build_dataset
    from raserec_core.data.readers import Interactions, read_sequences
    from raserec_core.memory.build import bank_from_dataset
    from raserec_core.memory.dynamic import add_interactions

    src = tmp_path / "short.txt"
    src.write_text("a 1 2 3 4 5 6\nb 2 3 4 5 6\nshort 7 8\n")  # 'short' has 2 items: no test instance
    ds = build_dataset(read_sequences(src), 0, 5, source=str(src))
    # dropped and counted, so no user of the artifact has items the bank does not know
    assert ds.user_ids.tolist() == ["a", "b"] and ds.stats["users_too_short"] == 1
    encoder, manifest = load_encoder(trained_model_dir, "cpu")
    bank = bank_from_dataset(ds, encoder, manifest["encoder_sha256"], MemoryConfig(index_type="brute"), 0, "cpu")
    slice_ = Interactions(np.array(["short", "short"]), np.array(["3", "4"]), np.array([9.0, 10.0]))
    new, report = add_interactions(bank, encoder, slice_, "cpu")
    # a new user: its first item has no prefix, the second gives one entry at position 1
    assert report["new_users"] == 1 and report["entries_added"] == 1
    short = new.user_ids.tolist().index("short")
    assert new.entries.position[-1].item() == 1 and new.entries.length[-1].item() == 1
    assert new.users.n_seen[short].item() == 2
    assert [new.item_ids[i] for i in new.users.last(short).tolist()] == ["3", "4"]
