"""Study specs: expansion into trials, the randomness designs, and named errors."""

from __future__ import annotations

import pytest
import yaml

from sparse_rcnn.platform.spec.job import SeedSpec
from sparse_rcnn.platform.spec.load import SpecError
from sparse_rcnn.platform.spec.study import load_study


@pytest.fixture
def write(tmp_path, small_job):
    """Write the small job as base.yaml and ``study`` as study.yaml; return load_study's."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(small_job(**{"seeds.seed": 7})))

    def make(**study):
        data = {"name": "st", "job": "base.yaml", **study}
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_study(path)

    return make


def test_all_design_is_settings_times_seeds(write):
    study = write(
        seeds=3, vary={"optimizer.lr": [1e-3, 2e-3], "model.overrides.num_proposals": [8, 16]}
    )
    assert len(study.settings) == 4 and len(study.trials) == 12
    assert [s.label for s in study.settings][:2] == [
        "optimizer.lr=0.001,model.overrides.num_proposals=8",
        "optimizer.lr=0.001,model.overrides.num_proposals=16",
    ]
    keys = [t.key for t in study.trials]
    assert len(set(keys)) == 12 and keys[0] == "s0-all-r0"
    t = study.trials[5]  # setting 1, seed 2
    assert (t.setting, t.seed, t.source) == (1, 2, "all")
    assert t.job["optimizer"]["lr"] == 1e-3
    assert t.job["model"]["overrides"] == {"num_proposals": 16, "num_stages": 2}
    # Every source follows the trial seed, exactly as a job with seeds.seed = 2 would.
    assert t.seeds == SeedSpec(seed=2).resolved()
    assert t.job["seeds"] == {"seed": 2, **t.seeds}
    assert t.job["name"] == "st-s1-all-r2"


def test_decompose_varies_one_source_at_a_time(write):
    study = write(seeds=[3, 4], randomness="decompose")
    base = SeedSpec(seed=7).resolved()  # the base job's seeds
    by = {(t.source, t.replicate): t.seeds for t in study.trials}
    # Default sources: all, init, data_order, augmentation, nondeterminism.
    assert len(study.trials) == 5 * 2
    for rep, seed in enumerate([3, 4]):
        assert by[("all", rep)] == SeedSpec(seed=seed).resolved()
    for source in ("init", "data_order", "augmentation"):
        for rep, seed in enumerate([3, 4]):
            expected = {**base, source: SeedSpec(seed=seed).resolved()[source]}
            assert by[(source, rep)] == expected
    assert by[("nondeterminism", 0)] == by[("nondeterminism", 1)] == base
    assert by[("init", 0)]["init"] != by[("init", 1)]["init"]


def test_pairing_replicate_shares_seeds_and_none_draws_distinct_ones(write):
    paired = write(seeds=3, vary={"optimizer.lr": [1e-3, 2e-3]})
    assert paired.spec.pairing == "replicate"
    by = {(t.setting, t.replicate): t.seeds for t in paired.trials}
    assert all(by[(0, r)] == by[(1, r)] for r in range(3))
    unpaired = write(seeds=3, vary={"optimizer.lr": [1e-3, 2e-3]}, pairing="none")
    s0 = {t.seed for t in unpaired.trials if t.setting == 0}
    s1 = {t.seed for t in unpaired.trials if t.setting == 1}
    assert s0 == {0, 1, 2} and len(s1) == 3 and not s0 & s1
    inits = [t.seeds["init"] for t in unpaired.trials]
    assert len(set(inits)) == 6


def test_explicit_sources_and_base_setting(write):
    study = write(seeds=2, randomness="decompose", sources=["init", "nondeterminism"])
    assert [s.label for s in study.settings] == ["base"]
    assert {t.source for t in study.trials} == {"init", "nondeterminism"}


@pytest.mark.parametrize(
    ("study", "message"),
    [
        ({"vary": {"optimizer.lrr": [1e-3]}}, "optimizer.lrr: unknown key"),
        ({"vary": {"optimizer.lr": [-1.0]}}, "setting 0 (optimizer.lr=-1)"),
        ({"vary": {"optimizer.lr": []}}, "optimizer.lr: needs at least one value"),
        ({"vary": {"seeds.init": [1, 2]}}, "the study sets seeds itself"),
        ({"set": {"name": "x"}}, "the study sets name itself"),
        ({"seeds": 0}, "seeds must be a count >= 1"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"randomness": "some"}, "randomness: Input should be 'all' or 'decompose'"),
        ({"alpha": 1.5}, "alpha: Input should be less than 0.5"),
        ({"alpha": 0.9}, "alpha: Input should be less than 0.5"),  # no 80 % power plan above
        ({"effect": 0.3}, "effect: unknown key"),
        ({"job": "missing.yaml"}, "base job spec not found"),
    ],
)
def test_bad_study_specs_name_the_field(write, study, message):
    with pytest.raises(SpecError, match=None) as info:
        write(**study)
    assert message in str(info.value)


def test_every_study_in_the_repo_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    files = sorted((root / "jobs" / "studies").glob("*.yaml")) + sorted(
        (root / "bench" / "specs").glob("*.yaml")
    )
    assert files
    for f in files:
        study = load_study(f)
        arms = 1 if study.spec.randomness == "all" else len(study.spec.sources)
        assert len(study.trials) == len(study.settings) * arms * len(study.spec.seed_list)


# -- sequential designs ------------------------------------------------------------------------

SEQ = {"design": "sequential", "seeds": {"initial": 3, "step": 2, "max": 8}}


def test_a_sequential_study_expands_to_its_most_seeds_and_runs_them_in_waves(write):
    from sparse_rcnn.platform.spec.study import wave_of, wave_replicates, wave_seeds, wave_sizes

    study = write(**SEQ, vary={"optimizer.lr": [1e-3, 2e-3]})
    spec = study.spec
    assert spec.design == "sequential" and spec.spending == "obrien_fleming"
    assert spec.futility is False and spec.num_seeds == 8
    # Every trial up to max is built and validated now; the driver runs them wave by wave.
    assert len(study.trials) == 2 * 8
    assert wave_sizes(spec) == (3, 5, 7, 8)
    assert [list(wave_replicates(spec, w)) for w in (1, 2, 3, 4)] == [
        [0, 1, 2],
        [3, 4],
        [5, 6],
        [7],
    ]
    assert [wave_of(spec, r) for r in range(8)] == [1, 1, 1, 2, 2, 3, 3, 4]
    waves = [wave_seeds(spec, 1, w) for w in (1, 2, 3, 4)]
    flat = [s for w in waves for s in w]
    assert len(flat) == len(set(flat)) == 8  # no seed repeats across waves
    assert wave_seeds(spec, 0, 2) == wave_seeds(spec, 1, 2) == [3, 4]  # paired by replicate
    by_key = {(t.setting, t.replicate): t.seed for t in study.trials}
    assert all(by_key[(1, r)] == s for r, s in zip(wave_replicates(spec, 2), waves[1], strict=True))
    unpaired = write(**SEQ, vary={"optimizer.lr": [1e-3, 2e-3]}, pairing="none").spec
    assert not set(wave_seeds(unpaired, 0, 1)) & set(wave_seeds(unpaired, 1, 1))
    assert wave_seeds(unpaired, 1, 3) == wave_seeds(unpaired, 1, 3)  # deterministic
    with pytest.raises(SpecError, match=r"wave: study st has waves 1..4, got 5"):
        wave_replicates(spec, 5)


def test_a_fixed_study_is_one_wave_and_expands_as_before(write, small_job):
    from sparse_rcnn.platform.spec.study import study_from_dict, wave_seeds, wave_sizes

    study = write(seeds=[5, 6, 9])
    assert study.spec.design == "fixed" and wave_sizes(study.spec) == (3,)
    assert wave_seeds(study.spec, 0, 1) == [5, 6, 9] == [t.seed for t in study.trials]
    # The saved spec (every field, defaults included) reads back, fixed and sequential alike.
    seq = write(**SEQ, vary={"optimizer.lr": [1e-3, 2e-3]}, spending="pocock", futility=True)
    for spec in (study.spec, seq.spec):
        again = study_from_dict(spec.model_dump(mode="json"), study.base_job)
        assert again.spec == spec


@pytest.mark.parametrize(
    ("study", "message"),
    [
        ({"design": "sequential", "seeds": 4},
         "invalid spec: seeds: design sequential needs seeds as {initial, step, max}, got 4"),
        ({"seeds": {"initial": 3, "step": 2, "max": 20}},
         "invalid spec: seeds: {initial, step, max} is for design: sequential"),
        ({**SEQ, "seeds": {"initial": 1, "step": 2, "max": 20}},
         "invalid spec: seeds: seeds.initial must be an integer >= 2, got 1"),
        ({**SEQ, "seeds": {"initial": 3, "step": 0, "max": 20}},
         "invalid spec: seeds: seeds.step must be an integer >= 1, got 0"),
        ({**SEQ, "seeds": {"initial": 3, "step": 2.5, "max": 20}},
         "invalid spec: seeds: seeds.step must be an integer >= 1, got 2.5"),
        ({**SEQ, "seeds": {"initial": 5, "step": 2, "max": 4}},
         "invalid spec: seeds: seeds.max must be >= seeds.initial (5), got 4"),
        ({**SEQ, "seeds": {"initial": 3, "step": 2}},
         "invalid spec: seeds: seeds.max: required in {initial, step, max}"),
        ({**SEQ, "seeds": {"initial": 3, "step": 2, "max": 9, "first": 1}},
         "invalid spec: seeds: seeds.first: unknown key"),
        ({**SEQ, "randomness": "decompose"},
         "invalid spec: randomness: design sequential takes randomness: all"),
        ({"spending": "pocock"}, "invalid spec: spending: only for design: sequential"),
        ({"futility": True}, "invalid spec: futility: only for design: sequential"),
        ({**SEQ, "spending": "linear"},
         "invalid spec: spending: Input should be 'obrien_fleming' or 'pocock'"),
        ({**SEQ, "futility": "yes"}, "invalid spec: futility: Input should be a valid boolean"),
        ({"design": "adaptive"}, "invalid spec: design: Input should be 'fixed' or 'sequential'"),
        (SEQ, "invalid spec: vary: design sequential compares settings with the baseline (the "
              "first); vary at least one field over two or more values"),
        ({**SEQ, "vary": {"optimizer.lr": [1e-3]}}, "invalid spec: vary: design sequential"),
    ],
)  # fmt: skip
def test_bad_sequential_fields_are_one_line_naming_the_field(write, study, message):
    with pytest.raises(SpecError) as info:
        write(**study)
    text = str(info.value)
    assert message in text and "\n" not in text, text
