"""Every registered model obeys the engine's contract (cf. timm's tests/test_models.py)."""

import dataclasses

import pytest
import torch

from defectscope.layers.backbones import BackboneConfig
from defectscope.models import MODELS, create_model
from defectscope.models.base import StepContext

SIZE = 64


def contract_config(name):
    """Defaults, except that pretrained backbones start from random weights (no package or file needed)."""
    cfg = MODELS[name][1]()
    random = {f.name: dataclasses.replace(getattr(cfg, f.name), pretrained=False) for f in dataclasses.fields(cfg)
              if isinstance(getattr(cfg, f.name), BackboneConfig)}
    return dataclasses.replace(cfg, **random)


@pytest.fixture(params=sorted(MODELS))
def model(request):
    torch.manual_seed(0)
    return create_model(request.param, contract_config(request.param), image_size=SIZE, num_classes=2)


def train_phases(model):
    return [p for p in model.phases() if p.kind == "train"]


def fit_a_little(model, images, classes):
    """One step of the first gradient phase, or a whole fit of a model that collects instead."""
    for phase in model.phases():
        if phase.kind == "collect":
            with torch.no_grad():
                model.collect(images, classes, phase.name)
            model.finish_collection(phase.name)
        else:
            model.training_step(images, classes, StepContext(0, phase=phase.name))  # lazily-built state
            return


def batch(n=2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, SIZE, SIZE, generator=g), torch.tensor([0, 1][:n])


def test_training_step_returns_finite_losses_for_every_group(model):
    images, classes = batch()
    for phase in train_phases(model):
        for group in model.optimizer_groups(phase.name):
            parts = model.training_step(images, classes, StepContext(0, phase=phase.name, group=group))
            assert parts.total.ndim == 0 and torch.isfinite(parts.total)


def test_backward_reaches_every_trainable_parameter(model):
    images, classes = batch()
    if not train_phases(model):
        assert not any(p.requires_grad for p in model.parameters()), "a collect-only model has nothing to train"
        return
    phase = train_phases(model)[0].name
    for name, group in model.optimizer_groups(phase).items():
        params = group.params
        model.zero_grad()
        model.training_step(images, classes, StepContext(0, phase=phase, group=name)).total.backward()
        missing = [p.shape for p in params if p.grad is None]
        assert not missing, f"{name}: {len(missing)} parameters got no gradient"


def test_predict_shapes_finite_and_deterministic(model):
    images, classes = batch()
    fit_a_little(model, images, classes)
    model.eval()
    with torch.no_grad():
        a = model.predict(images, classes)
        b = model.predict(images, classes)
    assert a.anomaly_map.shape == (2, SIZE, SIZE)
    assert a.image_score.shape == (2,)
    assert torch.isfinite(a.anomaly_map).all() and torch.isfinite(a.image_score).all()
    assert torch.equal(a.anomaly_map, b.anomaly_map)


def test_state_dict_round_trip_gives_the_same_output(model):
    images, classes = batch()
    fit_a_little(model, images, classes)
    model.eval()
    name = next(n for n, (cls, _) in MODELS.items() if isinstance(model, cls))
    clone = create_model(name, model.config, SIZE, num_classes=2)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        assert torch.allclose(model.predict(images, classes).anomaly_map, clone.predict(images, classes).anomaly_map)


def _state(model):
    """Every attribute of the model object (by identity), and the contents of its plain containers."""
    internal = ("_parameters", "_buffers", "_modules")
    out = {}
    for key, value in vars(model).items():
        out[key] = id(value)
        if isinstance(value, dict | list | set) and key not in internal:
            out[key + "[]"] = repr(sorted(map(str, value)))
    return out


def test_a_training_step_leaves_nothing_behind_but_parameters_and_buffers(model):
    images, classes = batch()
    phases = [p for p in model.phases() if p.kind == "train"]
    if not phases:
        pytest.skip(f"{type(model).__name__} has no gradient phase")
    model.train()
    before = _state(model)
    for phase in phases:
        handoff = {}
        for group in model.optimizer_groups(phase.name):
            out = model.training_step(images, classes, StepContext(0, 0.5, phase.name, group, handoff))
            handoff = {**handoff, **out.handoff}
    assert _state(model) == before, "training_step set or changed attributes on the model"
