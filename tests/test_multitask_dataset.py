"""`MultiTaskDataset`: batched reads return exactly what row-by-row reads return."""

from datasets import Dataset

from hf_mtl import MultiTaskDataset


def test_getitems_matches_row_reads_across_tasks():
    a = Dataset.from_dict({"input_ids": [[1, i] for i in range(5)], "attention_mask": [[1, 1]] * 5, "labels": list(range(5)),
                           "text": ["x"] * 5})
    b = Dataset.from_dict({"input_ids": [[2, i, i] for i in range(3)], "attention_mask": [[1, 1, 1]] * 3,
                           "labels": [[0, 1, -100]] * 3})
    dataset = MultiTaskDataset({"a": a, "b": b}, ["a", "b"])
    indices = [6, 0, 4, 5, 7, 1, 6]  # interleaved tasks, a repeated row
    batch = dataset.__getitems__(indices)
    assert batch == [dataset[i] for i in indices]
    assert [item["task_id"] for item in batch] == [1, 0, 0, 1, 1, 0, 1]
    assert "text" not in batch[1] and batch[0]["input_ids"] == [2, 1, 1]
