"""Day two: start from a previous run's weights after vocabularies and domains grew, then train only
the new domain while the old domains' predictions stay bit for bit the same."""
from __future__ import annotations

import re

import pytest
import torch

from hamur_dist.data.manifest import DenseFeature, FeatureSchema, SparseFeature
from hamur_dist.model import HamurConfig, ModelConfig, build_model
from hamur_dist.model.domain_parts import domain_parts, table_key
from hamur_dist.model.freeze import freeze_all_but_new_domains
from hamur_dist.model.grow import grow_optimizer_state, grow_state_dict

OLD_D, NEW_D, USERS, GROW = 2, 3, 20, 5
CASES = {
    "mlp_hamur_paper": dict(name="mlp", hamur=True),
    "mlp_hamur_reference": dict(name="mlp", hamur=True, mode="reference"),
    "shared_bottom_hamur_paper": dict(name="shared_bottom", hamur=True, insert_after=[0, -1]),
    "wide_deep_hamur_paper": dict(name="wide_deep", hamur=True),
    "dcn": dict(name="dcn"), "dcn_v2": dict(name="dcn_v2"), "star": dict(name="star", dropout=0.2),
    "mmoe": dict(name="mmoe"), "ple": dict(name="ple"), "per_domain": dict(name="per_domain"),
    "mlp": dict(name="mlp", dropout=0.2)}


def make_cfg(name, hamur=False, mode="paper", insert_after=(-1,), dropout=0.0, hidden=(8, 6)):
    return ModelConfig(name=name, embed_dim=4, hidden_dims=list(hidden), expert_dims=[6], tower_dims=[4],
                       num_experts=2, cross_layers=1, dropout=dropout,
                       hamur=HamurConfig(enabled=hamur, mode=mode, rank=3, bottleneck=3, hyper_hidden=[6],
                                         insert_after=list(insert_after)))


def make_schema(domains, users=USERS, names=("user", "item", "domain_indicator")):
    vocab = [users, 15, domains + 1]
    return FeatureSchema(sparse=[SparseFeature(n, v) for n, v in zip(names, vocab)],
                         dense=[DenseFeature("d0"), DenseFeature("d1")], num_domains=domains)


def make_batch(schema, domains, seed, users=None):
    gen = torch.Generator().manual_seed(seed)
    domain = torch.as_tensor(domains).long()
    n = len(domain)
    sparse = torch.stack([torch.randint(users or schema.sparse[0].vocab_size, (n,), generator=gen),
                          torch.randint(schema.sparse[1].vocab_size, (n,), generator=gen), domain + 1], 1)
    return sparse, torch.rand(n, 2, generator=gen), domain, torch.randint(2, (n,), generator=gen).float()


def train(model, opt, schema, domains, steps, frozen=None, seed=0):
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for step in range(steps):
        frozen.train_mode(model) if frozen else model.train()
        sparse, dense, domain, label = make_batch(schema, domains, seed + step)
        loss = loss_fn(model(sparse, dense, domain), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if frozen:
            frozen.restore()


def old_and_new(cfg, users=USERS + GROW, steps=3, opt_cls=torch.optim.Adam, **opt_kw):
    old_schema, new_schema = make_schema(OLD_D), make_schema(NEW_D, users=users)
    torch.manual_seed(0)
    old = build_model(cfg, old_schema)
    opt = opt_cls(old.parameters(), **(opt_kw or dict(lr=1e-2, weight_decay=1e-3)))
    train(old, opt, old_schema, [0, 1] * 8, steps)
    torch.manual_seed(1)
    new = build_model(cfg, new_schema)
    return old, opt, new, old_schema, new_schema


def clone_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_grown(old_state, fresh, grown, parts):
    for key, new in grown.items():
        if key not in old_state:                       # a new domain's part: fresh initialisation
            assert parts.list_domain(key) >= OLD_D and torch.equal(new, fresh[key]), key
            continue
        old = old_state[key]
        if old.dim() == 0 or old.shape == new.shape:
            assert torch.equal(new, old), key
        elif parts.blocked_table_of(key):              # per_domain: (domain, id) re-laid out
            olds, news, fresh_blocks = old.chunk(OLD_D), new.chunk(NEW_D), fresh[key].chunk(NEW_D)
            for d in range(NEW_D):
                copied = olds[d].shape[0] if d < OLD_D else 0
                assert copied == 0 or torch.equal(news[d][:copied], olds[d]), key
                assert torch.equal(news[d][copied:], fresh_blocks[d][copied:]), key
        else:                                          # old rows / domains first, then fresh ones
            assert torch.equal(new[:old.shape[0]], old), key
            assert torch.equal(new[old.shape[0]:], fresh[key][old.shape[0]:]), key


@pytest.mark.parametrize("case", list(CASES))
def test_grow_then_train_only_the_new_domain(case):
    cfg = make_cfg(**CASES[case])
    old, _, new, old_schema, new_schema = old_and_new(cfg)
    fresh, old_state = clone_state(new), clone_state(old)
    state, report = grow_state_dict(old.state_dict(), new, old_schema, new_schema)
    check_grown(old_state, fresh, state, parts := domain_parts(new))
    assert report.tables == {"user": (USERS, USERS + GROW), "domain_indicator": (OLD_D + 1, NEW_D + 1)}
    assert (report.old_num_domains, report.new_num_domains, report.grew) == (OLD_D, NEW_D, True)
    assert sorted(report.new_keys) == sorted(k for k in state if k not in old_state)
    assert report.new_keys or parts.tensors
    new.load_state_dict(state)
    frozen = freeze_all_but_new_domains(new, OLD_D, extra_rows={"domain_indicator": OLD_D + 1})
    assert frozen.trainable_parameters() and all(p.requires_grad for p in frozen.trainable_parameters())
    assert not any(new.get_parameter(n).requires_grad for n in frozen.frozen)
    before = clone_state(new)
    opt = torch.optim.Adam(frozen.trainable_parameters(), lr=1e-2, weight_decay=1e-2)
    train(new, opt, new_schema, [0, 1, 2, 2] * 6, steps=4, frozen=frozen, seed=100)
    after = new.state_dict()
    new_prefixes = tuple(m + "." for m in frozen.train_modules)
    for key, value in after.items():
        if key.startswith(new_prefixes):
            if "running_mean" in key or "weight" in key:   # new domain trained (in train mode)
                assert not torch.equal(value, before[key]), key
        elif key in frozen.partial:
            k = frozen.partial[key].frozen_rows
            assert torch.equal(value[:k], before[key][:k]), key
            assert not torch.equal(value[k:], before[key][k:]), key
        else:                                          # shared and old domains: untouched, buffers too
            assert torch.equal(value, before[key]), key
    for seed in (7, 8):                                # old domains, old ids: the same logits, bit for bit
        sparse, dense, domain, _ = make_batch(old_schema, [0, 1, 1, 0, 1] * 4, seed, users=USERS)
        old.eval(), new.eval()
        with torch.no_grad():
            assert torch.equal(old(sparse, dense, domain), new(sparse, dense, domain))


def test_domain_parts_by_class():
    expect = {
        "mlp_hamur_paper": (["towers", "heads", "hamur.cells.1"], 0),
        "mlp_hamur_reference": (["towers", "heads"], 0),
        "shared_bottom_hamur_paper": (["towers", "heads", "hamur.cells.0", "hamur.cells.2"], 0),
        "wide_deep_hamur_paper": (["heads", "hamur.cells.1"], 0),
        "dcn": (["heads"], 0), "mmoe": (["gates", "towers", "heads"], 0),
        "ple": (["levels.0.specific", "levels.0.gates", "levels.1.specific", "levels.1.gates",
                 "towers", "heads"], 0),
        "star": (["norms.0.norms", "norms.1.norms"], 11), "per_domain": (["towers", "heads"], 0),
    }
    for case, (lists, tensors) in expect.items():
        parts = domain_parts(build_model(make_cfg(**CASES[case]), make_schema(OLD_D)))
        assert list(parts.lists) == lists and len(parts.tensors) == tensors, case
        assert bool(parts.blocked_tables) == (case == "per_domain")
    # as many shared experts as domains: still shared
    cfg = make_cfg("mmoe")
    cfg.num_experts = OLD_D
    assert "experts" not in domain_parts(build_model(cfg, make_schema(OLD_D))).lists
    with pytest.raises(TypeError, match="does not know"):
        domain_parts(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name,mode,hamur", [("wide_deep", "reference", True), ("dcn", "reference", False),
                                             ("dcn_v2", "reference", False)])
def test_freeze_refuses_models_without_domain_parts(name, mode, hamur):
    model = build_model(make_cfg(name, hamur=hamur, mode=mode), make_schema(NEW_D))
    with pytest.raises(ValueError, match="no per-domain parts to train alone"):
        freeze_all_but_new_domains(model, OLD_D)
    # growing works all the same (only tables grow)
    old = build_model(make_cfg(name, hamur=hamur, mode=mode), make_schema(OLD_D))
    state, report = grow_state_dict(old.state_dict(), model, make_schema(OLD_D), make_schema(NEW_D))
    assert report.tables == {"domain_indicator": (OLD_D + 1, NEW_D + 1)} and not report.new_keys


def test_freeze_refuses_bad_arguments():
    model = build_model(make_cfg("mlp"), make_schema(NEW_D))
    for bad in (0, NEW_D):
        with pytest.raises(ValueError, match="old_num_domains"):
            freeze_all_but_new_domains(model, bad)
    with pytest.raises(ValueError, match="no embedding table 'nope'"):
        freeze_all_but_new_domains(model, OLD_D, extra_rows={"nope": 1})
    with pytest.raises(ValueError, match="outside"):
        freeze_all_but_new_domains(model, OLD_D, extra_rows={"item": 99})
    frozen = freeze_all_but_new_domains(model, OLD_D)
    with pytest.raises(ValueError, match="not the model"):
        frozen.train_mode(build_model(make_cfg("mlp"), make_schema(NEW_D)))
    frozen.train_mode(model)
    assert model.training and model.towers[2].training and not model.towers[0].training
    assert not model.embedding.training
    frozen.release()
    assert all(p.requires_grad for p in model.parameters())


def refuse(old, new, old_schema, new_schema, *fragments):
    with pytest.raises(ValueError) as err:
        grow_state_dict(old, new, old_schema, new_schema)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_grow_refuses_what_growth_does_not_explain():
    old_schema, new_schema = make_schema(OLD_D), make_schema(NEW_D, users=USERS + GROW)
    old = build_model(make_cfg("mlp"), old_schema)
    new = build_model(make_cfg("mlp", hidden=(8, 5)), new_schema)
    refuse(old.state_dict(), new, old_schema, new_schema, "'towers.0.layers.1.0.weight'", "(6, 8)", "(5, 8)")
    new = build_model(make_cfg("mlp"), new_schema)
    refuse(old.state_dict(), build_model(make_cfg("mlp"), make_schema(NEW_D, users=USERS - 1)), old_schema,
           make_schema(NEW_D, users=USERS - 1), "'embedding.tables.user.weight'", "shrank")
    refuse(build_model(make_cfg("mlp"), make_schema(NEW_D)).state_dict(), old, make_schema(NEW_D), old_schema,
           "fewer than the old")
    renamed = make_schema(NEW_D, names=("user", "product", "domain_indicator"))
    refuse(old.state_dict(), build_model(make_cfg("mlp"), renamed), old_schema, renamed, "features differ")
    extra = dict(old.state_dict(), **{"towers.0.extra": torch.zeros(3)})
    refuse(extra, new, old_schema, new_schema, "'towers.0.extra'", "(3,)", "absent")
    missing = {k: v for k, v in old.state_dict().items() if k != "heads.1.bias"}
    refuse(missing, new, old_schema, new_schema, "'heads.1.bias'", "absent", "(1,)", "domain 1")
    three = FeatureSchema(old_schema.sparse, old_schema.dense, num_domains=NEW_D)   # more than old_schema says
    three = build_model(make_cfg("mlp"), three).state_dict()
    refuse(three, new, old_schema, new_schema, "'towers.2.", "no such key")
    wrong_rows = dict(old.state_dict(), **{table_key("item"): torch.zeros(16, 4)})
    refuse(wrong_rows, new, old_schema, new_schema, "'embedding.tables.item.weight'", "(16, 4)", "(15, 4)")
    star_old = build_model(make_cfg("star"), old_schema).state_dict()
    star_old["layers.0.domain_bias"] = torch.zeros(OLD_D, 7)
    refuse(star_old, build_model(make_cfg("star"), new_schema), old_schema, new_schema,
           "'layers.0.domain_bias'", "(2, 7)", "(3, 8)")


def check_opt_state(name, old_st, new_st, report, init=0.0):
    spec = report.grown.get(name)
    for k, v in old_st.items():
        grown = spec is not None and v.dim() > 0
        expected = spec.place(v, torch.full(spec.new_shape, init)) if grown else v
        assert torch.equal(new_st[k], expected), (name, k)


@pytest.mark.parametrize("case,opt_cls,kw", [
    ("mlp_hamur_paper", torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-3)),
    ("star", torch.optim.AdamW, dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("per_domain", torch.optim.Adagrad, dict(lr=1e-2, initial_accumulator_value=0.25)),
    ("mmoe", torch.optim.SGD, dict(lr=1e-2, momentum=0.9)),
])
def test_optimizer_state_grows_by_name(case, opt_cls, kw):
    old, old_opt, new, old_schema, new_schema = old_and_new(make_cfg(**CASES[case]), opt_cls=opt_cls, **kw)
    state, report = grow_state_dict(old.state_dict(), new, old_schema, new_schema)
    new.load_state_dict(state)
    old_names, named = [n for n, _ in old.named_parameters()], list(new.named_parameters())
    new_opt = opt_cls(new.parameters(), **dict(kw, lr=3e-3))
    new_opt.load_state_dict(grow_optimizer_state(old_opt.state_dict(), old_names, new_opt, named, report))
    assert new_opt.param_groups[0]["lr"] == 3e-3
    old_state = {n: old_opt.state[p] for n, p in old.named_parameters()}
    init = kw.get("initial_accumulator_value", 0.0)
    for name, p in named:
        if name in old_state:
            check_opt_state(name, old_state[name], new_opt.state[p], report, init)
        elif opt_cls is torch.optim.Adagrad:           # eager state kept: the initial sum
            assert torch.equal(new_opt.state[p]["sum"], torch.full_like(p, init))
        else:
            assert not new_opt.state[p], name
    assert any(n in report.grown for n in old_state)
    # a step works and continues from the old state
    keep = {n: {k: v.clone() for k, v in new_opt.state[p].items()} for n, p in named if new_opt.state[p]}
    train(new, new_opt, new_schema, [0, 1, 2] * 5, steps=1, seed=50)
    name, p = next((n, p) for n, p in named if n in old_state and n not in report.grown and p.grad.abs().sum() > 0)
    if opt_cls is torch.optim.Adam:                    # weight decay: L2 added to the gradient
        grad = p.grad + 1e-3 * state[name]
        assert torch.allclose(new_opt.state[p]["exp_avg"], 0.9 * keep[name]["exp_avg"] + 0.1 * grad, atol=1e-7)
        assert new_opt.state[p]["step"] == keep[name]["step"] + 1
    elif opt_cls is torch.optim.SGD:
        assert torch.allclose(new_opt.state[p]["momentum_buffer"], 0.9 * keep[name]["momentum_buffer"] + p.grad)


def test_optimizer_state_for_the_frozen_subset_and_refusals():
    old, old_opt, new, old_schema, new_schema = old_and_new(make_cfg(**CASES["star"]))
    state, report = grow_state_dict(old.state_dict(), new, old_schema, new_schema)
    new.load_state_dict(state)
    frozen = freeze_all_but_new_domains(new, OLD_D, extra_rows={"domain_indicator": OLD_D + 1})
    named = frozen.named_trainable_parameters()
    opt = torch.optim.Adam([p for _, p in named], lr=1e-3)
    old_names = [n for n, _ in old.named_parameters()]
    opt.load_state_dict(grow_optimizer_state(old_opt.state_dict(), old_names, opt, named, report))
    weight = new.get_parameter("layers.0.domain_weight")
    assert opt.state[weight]["exp_avg"].shape == weight.shape
    train(new, opt, new_schema, [0, 1, 2] * 4, steps=2, frozen=frozen)
    with pytest.raises(ValueError, match="in its order"):
        grow_optimizer_state(old_opt.state_dict(), old_names, opt, named[::-1], report)
    with pytest.raises(ValueError, match="old_param_names has"):
        grow_optimizer_state(old_opt.state_dict(), old_names[1:], opt, named, report)
    bad = old_opt.state_dict()
    first = old_names.index("layers.0.domain_weight")
    bad["state"][first]["exp_avg"] = torch.zeros(OLD_D, 1, 1)
    with pytest.raises(ValueError, match=re.escape("'layers.0.domain_weight' optimizer state 'exp_avg'")):
        grow_optimizer_state(bad, old_names, opt, named, report)


def test_frozen_rows_get_no_gradient():
    model = build_model(make_cfg("star"), make_schema(NEW_D))
    frozen = freeze_all_but_new_domains(model, OLD_D, extra_rows={"domain_indicator": OLD_D + 1})
    frozen.train_mode(model)
    sparse, dense, domain, label = make_batch(make_schema(NEW_D), [0, 1, 2] * 4, seed=3)
    torch.nn.functional.binary_cross_entropy_with_logits(model(sparse, dense, domain), label).backward()
    for name, k in (("layers.0.domain_weight", OLD_D), ("embedding.tables.domain_indicator.weight", OLD_D + 1)):
        grad = model.get_parameter(name).grad
        assert not grad[:k].any() and grad[k:].any(), name
    assert model.get_parameter("layers.0.weight").grad is None
    assert "trainable" in frozen.summary() and frozen.trainable_values() > 0

