"""Readers and writers of the data model: lossless round trips and errors that name the file and line."""

from __future__ import annotations

import pandas as pd
import pytest

from cascade.core.errors import CascadeError
from cascade.eval.frames import format_run, normalise_run, read_qrels, read_queries, read_run, write_run


def write(path, text: str):
    path.write_text(text)
    return path


def test_run_round_trip_is_lossless_and_byte_stable(tmp_path):
    run = pd.DataFrame(
        {
            "qid": ["q2", "q2", "q1", "q1", "q1"],
            "docno": ["a", "b", "c", "d", "e"],
            "score": [0.1 + 0.2, 1e-7, 12.5, 12.5, -3.0],
            "rank": [2, 1, 1, 2, 3],
        }
    )
    first = tmp_path / "a.trec"
    write_run(normalise_run(run), first)
    again = read_run(first)
    assert again["score"].tolist() == [0.30000000000000004, 1e-07, 12.5, 12.5, -3.0]
    second = tmp_path / "b.trec"
    write_run(again, second)
    assert first.read_bytes() == second.read_bytes()


def test_read_run_orders_by_score_and_renumbers_ranks(tmp_path):
    path = write(tmp_path / "r.trec", "1 Q0 x 7 1.5 t\n1 Q0 y 3 2.5 t\n2 Q0 z 1 0.5 t\n")
    run = read_run(path)
    assert run[["qid", "docno", "rank"]].values.tolist() == [["1", "y", 1], ["1", "x", 2], ["2", "z", 1]]


def test_tab_separated_run_is_read(tmp_path):
    path = write(tmp_path / "r.trec", "1\tQ0\tx\t1\t1.5\tt\n1\tQ0\ty\t2\t0.5\tt\n")
    assert read_run(path)["docno"].tolist() == ["x", "y"]


def test_run_line_with_too_few_columns_names_the_line(tmp_path):
    path = write(tmp_path / "r.trec", "1 Q0 x 1 1.5 t\n\n1 Q0 y 2\n")
    with pytest.raises(CascadeError, match=r"r\.trec:3: expected 6 columns"):
        read_run(path)


def test_run_with_non_numeric_score_names_the_line(tmp_path):
    path = write(tmp_path / "r.trec", "1 Q0 x 1 1.5 t\n1 Q0 y 2 high t\n")
    with pytest.raises(CascadeError, match=r"r\.trec:2: score 'high' is not a number"):
        read_run(path)


def test_run_with_repeated_document_is_refused(tmp_path):
    path = write(tmp_path / "r.trec", "1 Q0 x 1 1.5 t\n1 Q0 x 2 1.0 t\n")
    with pytest.raises(CascadeError, match=r"r\.trec:2: document 'x' appears twice"):
        read_run(path)


def test_trec_and_beir_qrels_read_alike(tmp_path):
    trec = read_qrels(write(tmp_path / "q.txt", "1 0 a 2\n1 0 b 0\n2 0 c 1\n"))
    beir = read_qrels(write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\n1\ta\t2\n1\tb\t0\n2\tc\t1\n"))
    pd.testing.assert_frame_equal(trec, beir)
    assert trec.columns.tolist() == ["qid", "docno", "label"]


def test_conflicting_duplicate_qrels_name_the_line(tmp_path):
    path = write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\n1\ta\t2\n1\tb\t0\n1\ta\t0\n")
    with pytest.raises(CascadeError, match=r"q\.tsv:4: conflicting judgments .*'1'.*'a'.*\[2, 0\]"):
        read_qrels(path)


def test_identical_duplicate_qrels_are_merged(tmp_path):
    qrels = read_qrels(write(tmp_path / "q.txt", "1 0 a 2\n1 0 a 2\n"))
    assert len(qrels) == 1


def test_empty_query_names_the_line(tmp_path):
    path = write(tmp_path / "queries.jsonl", '{"_id": "1", "text": "ok"}\n{"_id": "2", "text": "   "}\n')
    with pytest.raises(CascadeError, match=r"queries\.jsonl:2: query '2' is empty"):
        read_queries(path)


def test_queries_keep_instructions(tmp_path):
    path = write(
        tmp_path / "queries.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b", "instruction": "only c"}\n'
    )
    queries = read_queries(path)
    assert queries.columns.tolist() == ["qid", "query", "instruction"]
    assert queries["instruction"].tolist() == ["", "only c"]


def test_empty_run_formats_to_nothing():
    assert format_run(pd.DataFrame({"qid": [], "docno": [], "score": [], "rank": []})) == b""


def test_beir_folder_round_trip(tmp_path):
    from cascade.eval.datasets import load_dataset, load_folder
    from cascade.eval.frames import write_beir_folder

    sample = load_dataset("sample")
    folder = write_beir_folder(tmp_path / "copy", sample.corpus.docs(), sample.queries, sample.qrels)
    again = load_folder(folder)
    pd.testing.assert_frame_equal(again.queries, sample.queries)
    pd.testing.assert_frame_equal(again.qrels, sample.qrels)
    assert list(again.corpus.docs()) == list(sample.corpus.docs())


def test_trec_qrels_round_trip(tmp_path):
    from cascade.eval.frames import write_qrels

    qrels = read_qrels(write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\n1\ta\t2\n2\tb\t0\n"))
    write_qrels(qrels, tmp_path / "q.txt")
    pd.testing.assert_frame_equal(read_qrels(tmp_path / "q.txt"), qrels)


# --- issue 14: damaged files and ids a TREC run cannot hold, refused where they are read


def test_fractional_beir_label_names_its_line_counting_the_header(tmp_path):
    path = write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\n1\ta\t1\n1\tb\t0.5\n")
    with pytest.raises(CascadeError, match=r"q\.tsv:3: label '0\.5' is not an integer"):
        read_qrels(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"_id": "a", "text": "again"}', r"c\.jsonl:3: document id 'a' appears twice \(first on line 1\)"),
        ('{"_id": "a b", "text": "x"}', r"c\.jsonl:3: document id 'a b' contains whitespace"),
        ('{"_id": "", "text": "x"}', r"c\.jsonl:3: empty document id"),
        ('{"_id": null, "text": "x"}', r"c\.jsonl:3: document id None is not a string"),
    ],
)
def test_corpus_ids_a_run_cannot_hold_are_refused(tmp_path, line, message):
    from cascade.eval.frames import iter_corpus

    path = write(tmp_path / "c.jsonl", '{"_id": "a", "text": "x"}\n{"_id": 7, "text": "y"}\n' + line + "\n")
    with pytest.raises(CascadeError, match=message):
        list(iter_corpus(path))


def test_corpus_without_file_names_the_document():
    from cascade.eval.frames import DocIds

    ids = DocIds("irds:x", lines=False)
    for position, docno in enumerate(["a", "b", "a"], 1):
        ids.check(docno, position)
    with pytest.raises(
        CascadeError, match=r"irds:x \(document 3\): document id 'a' appears twice \(first on document 1\)"
    ):
        ids.finish(lambda: [("a", 1), ("b", 2), ("a", 3)])


def test_query_id_with_whitespace_is_refused(tmp_path):
    path = write(tmp_path / "q.tsv", "1\tfirst\n2 b\tsecond\n")
    with pytest.raises(CascadeError, match=r"q\.tsv:2: query id '2 b' contains whitespace"):
        read_queries(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("r.trec", b"1 Q0 a 1 2.0 t\n1 Q0 caf\xe9 2 1.0 t\n", r"r\.trec:2: not UTF-8 text \(byte 0xe9 at column 9\)"),
        ("r.trec", b"1 Q0 a 1 2.0 t\n\x00\x01\x02", r"r\.trec:2: binary data"),
        ("r.trec.gz", b"1 Q0 a 1 2.0 t\n", r"r\.trec\.gz: named \.gz but not gzip-compressed"),
        ("r.trec", b"\x1f\x8b\x08\x00", r"r\.trec: gzip-compressed, but its name does not end in \.gz"),
    ],
)
def test_damaged_run_files_name_file_and_line(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CascadeError, match=message):
        read_run(path)


def test_truncated_gzip_is_one_error(tmp_path):
    import gzip

    data = gzip.compress(b"".join(b"1 0 d%d 1\n" % i for i in range(5000)))
    path = tmp_path / "q.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CascadeError, match=r"q\.txt\.gz: truncated gzip data after line \d+"):
        read_qrels(path)
