"""Serving: the request rules of ``tracking.serving``, then the same through ``mlflow models serve``."""

from __future__ import annotations

import os
import sys
import threading
import urllib.request

import numpy as np
import pandas as pd
import pytest
from infra_fixtures import mlflow_store, toy_dataset, toy_encoder  # noqa: F401
from serving_helpers import logged_model, post

from raserec_core.tracking import model_folder
from raserec_core.tracking.local_server import mlflow_serve
from raserec_core.tracking.serving import RequestError, answer, parse_params, parse_rows


@pytest.fixture(scope="module")
def packed(toy_dataset, toy_encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving") / "packed"
    model_folder.pack(toy_encoder, toy_dataset, folder, None, "cpu")
    return folder


@pytest.fixture(scope="module")
def served(packed):
    return model_folder.load(packed, "cpu"), model_folder.load_popularity(packed)


def _masked_reference(rec, history: list[str], k: int) -> list[str]:
    """Top-k with the history's items masked out: rank the whole catalogue, drop them, cut."""
    ranking, _ = rec.recommend([history], None, len(rec.item_ids), exclude_history=False)
    return [i for i in ranking[0] if i not in set(history)][:k]


def test_history_excluded_exactly_as_masking(served):
    rec, pop = served
    histories = [["i1", "i2", "i3"], ["i4", "i4", "i9", "i0", "i11", "i12"], ["i5"]]
    out = answer(rec, pop, histories, [None] * 3, 4)
    for h, got in zip(histories, out["item_ids"]):
        assert got == _masked_reference(rec, h, 4)
        assert not set(got) & set(h) and len(got) == 4
    kept = answer(rec, pop, histories[:1], [None], 4, exclude_history=False)
    assert kept["item_ids"][0] == rec.recommend(histories[:1], None, 4, exclude_history=False)[0][0]
    assert set(kept["item_ids"][0]) & set(histories[0])  # this untrained toy ranks its history high


def test_cold_start_gets_popular_items_and_unknown_ids_are_reported(served, toy_dataset):
    from raserec_core.data import read_dataset

    rec, pop = served
    ds = read_dataset(toy_dataset)
    counts = np.bincount(np.concatenate([s.target for s in ds.splits.values()]), minlength=ds.n_items)
    expected = ds.item_ids[np.argsort(-counts[1:], kind="stable") + 1][:3].tolist()
    out = answer(rec, pop, [[], ["nope", "zilch"], ["nope", "i1", "i2"]], [None] * 3, 3)
    assert out["item_ids"][0] == out["item_ids"][1] == expected
    assert out["scores"][0] == sorted(counts[1:], reverse=True)[:3]
    assert out["fallback"].tolist() == [True, True, False]
    assert out["ignored_ids"].tolist() == [[], ["nope", "zilch"], ["nope"]]
    assert out["item_ids"][2] == _masked_reference(rec, ["i1", "i2"], 3)  # the known ids alone


def test_empty_request_and_empty_histories_only(served):
    rec, pop = served
    out = answer(rec, pop, [], [], 3)
    assert len(out) == 0 and list(out.columns) == ["item_ids", "scores", "fallback", "ignored_ids"]
    out = answer(rec, pop, [[], []], [None, None], 2)
    assert out["item_ids"].tolist() == [pop.item_ids[:2].tolist()] * 2 and out["fallback"].all()


def test_k_capped_at_the_catalogue_and_long_histories_cut_to_the_window(served):
    rec, pop = served
    catalogue = len(rec.item_ids) - 1
    out = answer(rec, pop, [["i1"], []], [None, None], 10_000)
    assert len(out["item_ids"][0]) == catalogue - 1 and len(out["item_ids"][1]) == catalogue
    long = [f"i{j % 7}" for j in range(10_000)]  # 7 distinct items, the window is the last 10
    out = answer(rec, pop, [long], [None], 5, exclude_history=False)
    assert out["item_ids"][0] == rec.recommend([long[-rec.max_len:]], None, 5, exclude_history=False)[0][0]
    assert answer(rec, pop, [long], [None], 5)["item_ids"][0] == _masked_reference(rec, long[-rec.max_len:], 5)


@pytest.mark.parametrize(
    "params, message",
    [({"k": 0}, "k: expected an integer >= 1, got 0"), ({"k": -3}, "k: expected an integer >= 1, got -3"),
     ({"k": 2.5}, "k: expected an integer >= 1, got 2.5"), ({"k": "7"}, "k: expected an integer >= 1, got '7'"),
     ({"k": True}, "k: expected an integer >= 1, got True"),
     ({"exclude_history": "no"}, "exclude_history: expected true or false, got 'no'")],
)
def test_bad_params_name_the_field(params, message):
    with pytest.raises(RequestError) as err:
        parse_params(params)
    assert str(err.value) == message


def test_rows_accept_string_and_integer_ids_and_name_the_bad_field():
    histories, users = parse_rows(pd.DataFrame({"history": [["1", 2, np.int64(3)], None], "user_id": [5.0, np.nan]}))
    assert histories == [["1", "2", "3"], []] and users == ["5", None]
    for frame, message in [
        (pd.DataFrame({"history": ["abc"]}), "history: row 0 is not a list of item ids (got str)"),
        (pd.DataFrame({"history": [["1"], [1.5]]}), "history: row 1 holds 1.5; item ids are strings or integers"),
        (pd.DataFrame({"items": [["1"]]}), "history: missing (each row needs a list of item ids)"),
    ]:
        with pytest.raises(RequestError) as err:
            parse_rows(frame)
        assert str(err.value) == message


# --- the real scoring server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(packed, mlflow_store, tmp_path_factory):
    """The logged model behind ``mlflow models serve`` with two uvicorn workers; yields (url, process)."""
    uri, art = mlflow_store
    root = tmp_path_factory.mktemp("http")
    model = logged_model(packed, uri, art, root / "model", ["i1", "i2"])
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env.update(RASEREC_DEVICE="cpu", OMP_NUM_THREADS="1")
    with mlflow_serve(sys.executable, model, env, root / "server.log", workers=2) as (url, proc):
        yield url, proc


def _invoke(url, body):
    return post(url + "/invocations", body)


@pytest.mark.integration
def test_http_request_shapes_and_integer_ids(server, served):
    url, _ = server
    rec, _ = served
    expected = _masked_reference(rec, ["i1", "i2"], 3)
    bodies = [
        {"dataframe_records": [{"history": ["i1", "i2"]}, {"history": []}]},
        {"dataframe_split": {"columns": ["history"], "data": [[["i1", "i2"]], [[]]]}},
        {"inputs": {"history": [["i1", "i2"], []]}},
        {"inputs": [{"history": ["i1", "i2"]}, {"history": []}]},
    ]
    for body in bodies:
        status, out = _invoke(url, {**body, "params": {"k": 3}})
        assert status == 200, (body, out)
        assert [p["item_ids"] for p in out["predictions"]][0] == expected, body
        assert [p["fallback"] for p in out["predictions"]] == [False, True]
    # `instances` (rows turned into columns by MLflow through numpy): rows of equal-length histories
    status, out = _invoke(url, {"instances": [{"history": ["i1", "i2"]}, {"history": ["i2", "i1"]}], "params": {"k": 3}})
    assert status == 200 and out["predictions"][0]["item_ids"] == expected, out
    # integer ids: the catalogue's ids are strings, an integer id is its decimal string
    status, out = _invoke(url, {"dataframe_records": [{"history": [7, "i1", 12]}], "params": {"k": 3}})
    assert status == 200 and out["predictions"][0]["ignored_ids"] == ["7", "12"], out


@pytest.mark.integration
def test_http_exclusion_fallback_cap_and_long_history(server, served):
    url, _ = server
    rec, pop = served
    status, out = _invoke(url, {"dataframe_records": [{"history": ["i1", "i2", "i3"]}], "params": {"k": 5}})
    assert status == 200 and not set(out["predictions"][0]["item_ids"]) & {"i1", "i2", "i3"}
    status, out = _invoke(url, {"dataframe_records": [{"history": ["i1", "i2", "i3"]}],
                                "params": {"k": 5, "exclude_history": False}})
    assert out["predictions"][0]["item_ids"] == rec.recommend([["i1", "i2", "i3"]], None, 5, exclude_history=False)[0][0]
    status, out = _invoke(url, {"dataframe_records": [{"history": ["ghost"]}, {"history": []}], "params": {"k": 2}})
    assert status == 200
    assert [p["item_ids"] for p in out["predictions"]] == [pop.item_ids[:2].tolist()] * 2
    assert [(p["fallback"], p["ignored_ids"]) for p in out["predictions"]] == [(True, ["ghost"]), (True, [])]
    status, out = _invoke(url, {"dataframe_records": [{"history": ["i1"]}], "params": {"k": 100_000}})
    assert status == 200 and len(out["predictions"][0]["item_ids"]) == len(rec.item_ids) - 2
    long = [f"i{j % 7}" for j in range(10_000)]
    status, out = _invoke(url, {"inputs": {"history": [long]}, "params": {"k": 3, "exclude_history": False}})
    assert status == 200 and out["predictions"][0]["item_ids"] == rec.recommend([long[-rec.max_len:]], None, 3, exclude_history=False)[0][0]


@pytest.mark.integration
@pytest.mark.parametrize(
    "body, field",
    [({"dataframe_records": [{"history": ["i1"]}], "params": {"k": 0}}, "k: expected an integer >= 1, got 0"),
     ({"dataframe_records": [{"history": ["i1"]}], "params": {"k": -1}}, "k: expected an integer >= 1, got -1"),
     ({"dataframe_records": [{"history": "i1"}], "params": {"k": 3}}, "history: row 0 is not a list of item ids (got str)"),
     ({"dataframe_records": [{"history": ["i1"]}, {"history": [{"id": 1}]}]}, "history: row 1 holds {'id': 1}; item ids are strings or integers"),
     ({"dataframe_records": [{"items": ["i1"]}]}, "history: missing (each row needs a list of item ids)")],
)
def test_http_bad_requests_get_400_with_one_line(server, body, field):
    url, _ = server
    status, out = _invoke(url, body)
    assert status == 400
    assert out["message"] == field and out["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "stack_trace" not in out and "\n" not in out["message"]  # one line, no trace or server paths


@pytest.mark.integration
def test_http_params_of_the_wrong_type_are_refused_by_the_signature(server):
    """MLflow checks params against the signature (k: long, exclude_history: boolean) before the model
    runs: 400 naming the parameter, no stack trace (its message also repeats the input)."""
    url, _ = server
    for name, value in (("k", "abc"), ("k", 2.5), ("exclude_history", "yes")):
        status, out = _invoke(url, {"dataframe_records": [{"history": ["i1"]}], "params": {name: value}})
        assert status == 400 and f"'{name}'" in out["message"] and "stack_trace" not in out
        assert "Traceback" not in out["message"] and "/site-packages/" not in out["message"]


@pytest.mark.integration
def test_http_200_concurrent_requests_all_answered(server, served):
    url, proc = server
    rec, _ = served
    n = 200
    histories = [[f"i{(3 * j) % 15}", f"i{(3 * j + 1) % 15}"] for j in range(n)]
    results: list = [None] * n
    start = threading.Barrier(n)

    errors: dict[int, str] = {}

    def call(j):
        start.wait()
        try:  # one worker answers all 200 in turn: on a loaded machine the last ones wait minutes, not lost
            results[j] = post(url + "/invocations", {"dataframe_records": [{"history": histories[j]}], "params": {"k": 3}},
                              timeout=280)
        except Exception as exc:  # a thread's exception would otherwise vanish
            errors[j] = repr(exc)

    threads = [threading.Thread(target=call, args=(j,)) for j in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, f"{len(errors)} requests failed, e.g. {next(iter(errors.values()))}"
    assert all(r is not None for r in results), "a request got no answer"
    assert [s for s, _ in results] == [200] * n
    for h, (_, out) in zip(histories, results):
        assert out["predictions"][0]["item_ids"] == _masked_reference(rec, h, 3)
    assert proc.poll() is None
    with urllib.request.urlopen(url + "/ping", timeout=5) as resp:
        assert resp.status == 200
