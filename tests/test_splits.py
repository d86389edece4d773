import pandas as pd
import pytest

from routerzoo.data.splits import SplitSpec, assign_splits
from routerzoo.errors import ConfigError


def _prompts(n=1000, categories=("a", "b", "c")):
    return pd.DataFrame({
        "prompt_id": [f"id{i}" for i in range(n)],
        "prompt": [f"question number {i}" for i in range(n)],
        "category": [categories[i % len(categories)] for i in range(n)],
    })


def test_deterministic_and_close_to_fractions():
    prompts = _prompts()
    a = assign_splits(prompts, SplitSpec(val=0.1, test=0.2))
    b = assign_splits(prompts.sample(frac=1.0, random_state=3), SplitSpec(val=0.1, test=0.2))
    assert a.sort_index().equals(b.sort_index())  # order of rows does not matter
    shares = a.value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.05 and abs(shares["val"] - 0.1) < 0.04
    # adding prompts does not move existing ones (hash thresholds, not ranks)
    more = assign_splits(pd.concat([prompts, _prompts(1200).iloc[1000:]]), SplitSpec(val=0.1, test=0.2))
    assert more.loc[a.index].equals(a)


def test_seed_changes_assignment():
    prompts = _prompts()
    a = assign_splits(prompts, SplitSpec(seed=0))
    b = assign_splits(prompts, SplitSpec(seed=1))
    assert (a != b).mean() > 0.2


def test_duplicates_by_normalised_text_never_straddle():
    prompts = _prompts(400)
    dupes = prompts.copy()
    dupes["prompt_id"] = "dup-" + dupes["prompt_id"]
    dupes["prompt"] = "  " + dupes["prompt"].str.upper() + "\n"
    labels = assign_splits(pd.concat([prompts, dupes]), SplitSpec(val=0.1, test=0.3))
    for pid in prompts["prompt_id"]:
        assert labels[pid] == labels["dup-" + pid]


def test_stratified_exact_proportions_per_category():
    prompts = _prompts(900, categories=("a", "b", "c", "d", "e", "f", "g", "h", "i"))
    labels = assign_splits(prompts, SplitSpec(val=0.1, test=0.2, stratify=True))
    by_cat = pd.crosstab(prompts.set_index("prompt_id")["category"], labels)
    assert (by_cat["test"] == 20).all() and (by_cat["val"] == 10).all()


@pytest.mark.parametrize("val,test", [(-0.1, 0.2), (0.5, 0.5), (0.1, 1.0)])
def test_bad_fractions(val, test):
    with pytest.raises(ConfigError, match="split fractions"):
        SplitSpec(val=val, test=test)


def test_explicit_groups_and_text_duplicates_merge_transitively():
    # a ~ b by text, b ~ c by explicit group, so a, b, c share one split whatever the hash says
    rows = []
    for i in range(300):
        rows += [
            {"prompt_id": f"{i}-a", "prompt": f"Question {i}", "group": None},
            {"prompt_id": f"{i}-b", "prompt": f"question {i}  ", "group": f"g{i}"},
            {"prompt_id": f"{i}-c", "prompt": f"Question {i} (revised)", "group": f"g{i}"},
            {"prompt_id": f"{i}-d", "prompt": f"Unrelated {i}", "group": None},
        ]
    labels = assign_splits(pd.DataFrame(rows), SplitSpec(val=0.2, test=0.3))
    for i in range(300):
        assert labels[f"{i}-a"] == labels[f"{i}-b"] == labels[f"{i}-c"]
    d = pd.Series({i: labels[f"{i}-d"] for i in range(300)})
    a = pd.Series({i: labels[f"{i}-a"] for i in range(300)})
    assert (d != a).mean() > 0.3  # unrelated prompts are split independently
