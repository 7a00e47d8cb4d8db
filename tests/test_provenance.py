"""RunRecord: one record of where a result came from, compared the same way by resume, the
finished-run refusal and benchmark staleness."""

import json

import torch

from robustad.provenance import CHECKPOINT_FORMAT, RunRecord


def _record(images=None, **config):
    images = torch.zeros(4, 1, 8, 8) if images is None else images
    return RunRecord.of_training("cobra", {"train": {"epochs": 3, "lr": 0.1}, "score": {"views": 0}, **config}, images)


def test_a_training_record_reads_back_from_json_and_keeps_the_checkpoint_layout():
    record = _record()
    data = json.loads(json.dumps(record.to_dict()))
    # the layout training checkpoints have always had: older checkpoints still resume
    assert set(data) == {"method", "format", "version", "config", "images"}
    assert data["format"] == CHECKPOINT_FORMAT and "score" not in data["config"]
    assert data["images"]["count"] == 4 and data["images"]["size"] == [8, 8]
    assert RunRecord.from_dict(data) == record and RunRecord.from_dict(data).changes(record, strict=True) == []
    assert "world_size" in record.with_world_size(2).to_dict()


def test_changes_name_each_differing_field_with_its_section():
    record = _record()
    other_images = _record(images=torch.ones(4, 1, 8, 8))
    assert [c.split(":")[0] for c in record.changes(other_images)] == ["images.digest"]
    longer = RunRecord.of_training("cobra", {"train": {"epochs": 5, "lr": 0.1}}, torch.zeros(4, 1, 8, 8))
    assert record.changes(longer) == ["config.train.epochs: 3 -> 5"]
    assert _record(image_size=8).changes(record) == ["config.image_size: 8 -> <absent>"]
    assert record.changes(record.with_world_size(2)) == ["world_size: 1 -> 2"]
    svdd = RunRecord(method="deep-svdd")
    assert RunRecord(method="cobra").changes(svdd) == ["method: cobra -> deep-svdd"]
    measured = RunRecord(measurement={"max_test": 20}).changes(RunRecord(measurement={"max_test": 10}))
    assert measured == ["suite.max_test: 20 -> 10"]


def test_a_section_one_side_does_not_know_counts_only_when_strict():
    known, unknown = _record(), RunRecord(method="cobra")
    assert unknown.changes(known) == []  # e.g. a detector saved before image digests were recorded
    strict = unknown.changes(known, strict=True)
    assert "format: <absent> -> 1" in strict and "images: <absent> -> recorded" in strict


def test_a_record_that_is_not_one_is_refused_with_a_value_error():
    import pytest

    for bad in ([1, 2], {"config": [1]}, {"images": "x"}, {"world_size": "2"}, {"world_size": True}):
        with pytest.raises(ValueError):
            RunRecord.from_dict(bad)


def test_a_field_added_since_a_checkpoint_was_written_compares_as_its_default():
    images = torch.zeros(4, 1, 8, 8)
    defaults = {"train": {"epochs": 1, "lr": 0.1}, "transforms": {"filter": {"enabled": False, "quantile": 0.01}}}
    old = RunRecord.from_dict(_record().to_dict())  # written before transforms.filter existed
    now = RunRecord.of_training("cobra", {"train": {"epochs": 3, "lr": 0.1}, "transforms": defaults["transforms"]},
                                images, defaults=defaults)
    assert old.changes(now, strict=True) == []
    changed = json.loads(json.dumps(defaults["transforms"]))
    changed["filter"]["enabled"] = True
    asks_more = RunRecord.of_training("cobra", {"train": {"epochs": 3, "lr": 0.1}, "transforms": changed}, images,
                                      defaults=defaults)
    assert old.changes(asks_more, strict=True) == ["config.transforms.filter.enabled: False -> True"]
    # without the defaults, the missing field is a difference, as before
    assert old.changes(RunRecord.from_dict(now.to_dict()), strict=True) == [
        "config.transforms: <absent> -> {'filter': {'enabled': False, 'quantile': 0.01}}"]
    assert "config_defaults" not in now.to_dict()
