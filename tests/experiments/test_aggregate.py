import numpy as np
import pytest

from routing_env.experiments.aggregate import (
    POOLED,
    aggregate_rows,
    aggregate_table,
    check_bootstrap,
    comparison_section,
    improvement_estimate,
    improvement_rows,
    improvement_table,
    interval_estimate,
    normalised_score,
    on_shared_seeds,
    plot_profiles,
    record_score,
    report_section,
    score_distribution,
    score_matrices,
    wide_table,
    with_scores,
)
from routing_env.experiments.compare import summarize

REPS = 200


def records_of(scores, majority_rate=0.5):
    """Run records whose normalised scores are ``scores[(suite, method)]`` (lists, one per
    seed)."""
    return [
        {
            "suite": suite,
            "method": method,
            "kind": "router",
            "seed": seed,
            "test_accuracy": majority_rate + score * (1 - majority_rate),
            "majority_rate": majority_rate,
            "seconds": 1.0,
        }
        for (suite, method), values in scores.items()
        for seed, score in enumerate(values)
    ]


def test_normalised_score_is_zero_at_the_majority_rate_and_one_at_perfect_accuracy():
    assert normalised_score(0.9, 0.9) == 0.0
    assert normalised_score(1.0, 0.9) == 1.0
    assert normalised_score(0.95, 0.9) == pytest.approx(0.5)
    assert normalised_score(0.81, 0.9) == pytest.approx(-0.9)
    assert normalised_score(np.array([0.5, 0.75]), 0.5) == pytest.approx([0.0, 0.5])
    record = {"method": "wpl", "seed": 0, "suite": "s", "test_accuracy": 0.98, "majority_rate": 0.9}
    assert record_score(record) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="majority rate must lie in"):
        normalised_score(0.9, 1.0)
    with pytest.raises(ValueError, match="has no majority_rate"):
        record_score({**record, "majority_rate": None})


def test_scores_of_suites_with_different_majority_rates_pool_on_one_scale():
    records = records_of({("a", "wpl"): [0.2, 0.4]}, 0.9) + records_of(
        {("b", "wpl"): [0.6, 0.8]}, 0.5
    )
    assert records[0]["test_accuracy"] == pytest.approx(0.92)
    assert records[2]["test_accuracy"] == pytest.approx(0.8)
    matrix = score_matrices(records)["wpl"]
    assert matrix.shape == (2, 2)
    assert matrix == pytest.approx(np.array([[0.2, 0.6], [0.4, 0.8]]))


def test_iqm_is_the_mean_of_the_middle_half_and_its_interval_holds_it():
    scores = np.array([[1.0], [0.0], [0.6], [0.2], [0.5], [0.3], [0.1], [0.4]])
    estimate = interval_estimate(scores, reps=REPS)
    # Sorted: 0.0 0.1 | 0.2 0.3 0.4 0.5 | 0.6 1.0: two cut at each end.
    assert estimate["iqm"] == pytest.approx((0.2 + 0.3 + 0.4 + 0.5) / 4)
    assert estimate["mean"] == pytest.approx(3.1 / 8)
    assert estimate["iqm_low"] < estimate["iqm"] < estimate["iqm_high"]
    assert estimate["mean_low"] < estimate["mean"] < estimate["mean_high"]
    # Across suites too: the middle half of all 8 scores of a 4 x 2 matrix.
    assert interval_estimate(scores.reshape(4, 2), reps=REPS)["iqm"] == pytest.approx(0.35)


def test_the_interval_narrows_with_more_runs():
    few = np.linspace(0.0, 0.7, 8).reshape(8, 1)
    many = np.tile(few, (16, 1))  # the same scores, from 16 times as many runs
    narrow, wide = interval_estimate(many, reps=REPS), interval_estimate(few, reps=REPS)
    assert narrow["iqm"] == pytest.approx(wide["iqm"])
    for name in ("iqm", "mean"):
        # About 1 / sqrt(16) as wide.
        width = narrow[f"{name}_high"] - narrow[f"{name}_low"]
        assert 0 < width < 0.4 * (wide[f"{name}_high"] - wide[f"{name}_low"])
        assert narrow[f"{name}_low"] <= narrow[name] <= narrow[f"{name}_high"]


def test_the_bootstrap_is_seeded_and_leaves_the_global_generator_alone():
    scores = np.array([[0.1], [0.5], [0.2], [0.9], [0.4]])
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    first = interval_estimate(scores, reps=REPS, seed=7)
    assert np.random.random() == expected_next
    assert interval_estimate(scores, reps=REPS, seed=7) == first
    other = interval_estimate(scores, reps=REPS, seed=8)
    assert (other["iqm_low"], other["iqm_high"]) != (first["iqm_low"], first["iqm_high"])


def test_stratified_bootstrap_resamples_runs_within_each_suite():
    # Suite 1 always scores 0, suite 2 always 1: a resample that keeps every suite's count of
    # runs always has mean 0.5; one that ignored the suites would not.
    scores = np.array([[0.0, 1.0]] * 6)
    estimate = interval_estimate(scores, reps=REPS)
    assert (estimate["mean_low"], estimate["mean"], estimate["mean_high"]) == (0.5, 0.5, 0.5)
    assert (estimate["iqm_low"], estimate["iqm_high"]) == (0.5, 0.5)


def test_probability_of_improvement_is_one_for_a_dominating_method_and_half_for_a_twin():
    worse = np.array([[0.1, 0.3], [0.2, 0.0], [0.15, 0.2]])
    better = worse + 0.5
    dominating = improvement_estimate(better, worse, reps=REPS)
    assert dominating == {"probability": 1.0, "low": 1.0, "high": 1.0}
    assert improvement_estimate(worse, better, reps=REPS)["probability"] == 0.0
    twin = improvement_estimate(worse, worse.copy(), reps=REPS)
    assert twin["probability"] == 0.5
    assert twin["low"] < 0.5 < twin["high"]
    # Per suite, then averaged: X wins every pairing on suite 1 and loses every one on suite 2.
    mixed = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert improvement_estimate(mixed, mixed[:, ::-1], reps=REPS)["probability"] == 0.5
    # Suite 1: X wins all 4 pairings; suite 2: 3 won, 1 tied (counts half): (1 + 3.5 / 4) / 2.
    x, y = np.array([[0.5, 0.5], [0.6, 0.9]]), np.array([[0.1, 0.5], [0.2, 0.1]])
    assert improvement_estimate(x, y, reps=REPS)["probability"] == pytest.approx(0.9375)


def test_too_few_runs_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least 2 runs"):
        interval_estimate(np.array([[0.5, 0.4]]), reps=REPS)
    with pytest.raises(ValueError, match="runs x suites matrix"):
        interval_estimate(np.array([0.5, 0.4]), reps=REPS)
    with pytest.raises(ValueError, match=r"'wpl' has 1 run\(s\) on 's'"):
        score_matrices(records_of({("s", "wpl"): [0.5]}))
    uneven = records_of({("a", "wpl"): [0.5, 0.6], ("b", "wpl"): [0.5, 0.6, 0.7]})
    with pytest.raises(ValueError, match=r"different numbers of runs per suite \(a 2, b 3\)"):
        score_matrices(uneven)
    with pytest.raises(ValueError, match="positive integer"):
        check_bootstrap(0)
    with pytest.raises(ValueError, match="level"):
        check_bootstrap(10, 1.0)
    with pytest.raises(ValueError, match="X has 2 suites"):
        improvement_estimate(np.zeros((2, 2)), np.zeros((2, 1)), reps=REPS)


SCORES = {
    ("a", "wpl"): [0.8, 0.9, 0.85],
    ("a", "q"): [0.0, 0.1, 0.0],
    ("b", "wpl"): [0.5, 0.7, 0.6],
    ("b", "q"): [0.6, 0.4, 0.5],
    ("b", "cross-stitch"): [0.2, 0.3, 0.25],
}


def test_rows_per_suite_then_pooled_over_the_methods_that_ran_on_every_suite():
    rows = aggregate_rows(records_of(SCORES), reps=REPS)
    assert [(row["suite"], row["method"], row["runs"]) for row in rows] == [
        ("a", "wpl", 3),
        ("a", "q", 3),
        ("b", "wpl", 3),
        ("b", "q", 3),
        ("b", "cross-stitch", 3),
        (POOLED, "wpl", 6),
        (POOLED, "q", 6),
    ]
    assert rows[0]["mean"] == pytest.approx(0.85)
    # Pooled wpl: 0.5 0.6 | 0.7 0.8 0.85 | 0.9 ... with 6 scores, one cut at each end.
    assert rows[5]["iqm"] == pytest.approx((0.6 + 0.7 + 0.8 + 0.85) / 4)
    assert rows[5]["mean"] == pytest.approx((0.85 + 0.6) / 2)
    assert "| b | cross-stitch | 3 | 0.250 [" in aggregate_table(rows)
    table = wide_table(rows)
    assert table.splitlines()[0] == "| method | a | b | pooled |"
    assert "| cross-stitch | - | 0.250 [" in table


def test_improvement_rows_cover_the_suites_where_both_methods_ran():
    pairs = [("wpl", "q"), ("wpl", "cross-stitch"), ("wpl", "absent")]
    rows = improvement_rows(records_of(SCORES), pairs, reps=REPS)
    assert [(r["better"], r["worse"], r["suite"]) for r in rows] == [
        ("wpl", "q", "a"),
        ("wpl", "q", "b"),
        ("wpl", "q", POOLED),
        ("wpl", "cross-stitch", "b"),
    ]
    # b: wpl 0.5 0.7 0.6 vs q 0.6 0.4 0.5: 6 of 9 pairings won, 2 tied -> 7 / 9.
    assert rows[1]["probability"] == pytest.approx(7 / 9)
    assert rows[2]["probability"] == pytest.approx((1 + 7 / 9) / 2)
    table = improvement_table(rows)
    assert table.splitlines()[0] == "| X | Y | a | b | pooled |"
    assert "| wpl | cross-stitch | - | 1.00 [1.00, 1.00] | - |" in table


def test_a_suite_with_more_seeds_pools_only_the_seeds_every_suite_ran():
    scores = {**SCORES, ("a", "wpl"): [0.8, 0.9, 0.85, 0.1, 0.2]}
    records = records_of(scores)
    shared = on_shared_seeds(records)
    assert sorted(r["seed"] for r in shared if r["method"] == "wpl") == [0, 0, 1, 1, 2, 2]
    assert len([r for r in shared if r["method"] == "q"]) == 6
    assert on_shared_seeds(records, ["a"]) == [r for r in records if r["suite"] == "a"]
    rows = aggregate_rows(records, reps=REPS)
    runs = {(row["suite"], row["method"]): row["runs"] for row in rows}
    assert runs[("a", "wpl")] == 5 and runs[(POOLED, "wpl")] == 6
    assert rows[0]["mean"] == pytest.approx(0.57)
    pooled = next(r for r in rows if (r["suite"], r["method"]) == (POOLED, "wpl"))
    # Seeds 3 and 4 (0.1, 0.2) ran on suite a only: the pooled mean leaves them out.
    assert pooled["mean"] == pytest.approx((0.85 + 0.6) / 2)
    improvement = improvement_rows(records, [("wpl", "q")], reps=REPS)
    assert [r["suite"] for r in improvement] == ["a", "b", POOLED]
    # On a, all five wpl seeds meet q's three (0.0, 0.1, 0.0): wpl's 0.1 wins twice and ties
    # once, the other four win all three: (12 + 2.5) / 15.
    assert improvement[0]["probability"] == pytest.approx(14.5 / 15)
    assert improvement[2]["probability"] == pytest.approx((1 + 7 / 9) / 2)


def test_summary_rows_get_the_iqm_or_none_with_one_seed():
    records = records_of({("s", "wpl"): [0.2, 0.4, 0.6], ("s", "q"): [0.3]})
    rows = with_scores([{"suite": "s", "method": m} for m in ("wpl", "q")], records, reps=REPS)
    assert rows[0]["score_iqm"] == pytest.approx(0.4)
    assert rows[0]["score_iqm_low"] <= 0.4 <= rows[0]["score_iqm_high"]
    assert rows[1]["score_iqm"] is None and rows[1]["score_mean_high"] is None


def test_the_score_distribution_is_rliables():
    from rliable import library

    scores = np.array([[0.1, 0.5], [0.3, 0.3], [0.9, -0.2]])
    thresholds = np.linspace(-0.5, 1.0, 16)
    expected = library.score_distributions(scores, thresholds)
    assert score_distribution(scores, thresholds) == pytest.approx(expected)
    assert score_distribution(scores, [0.3])[0] == pytest.approx(2 / 6)  # 0.5 and 0.9


def test_profiles_and_sections_are_written(tmp_path):
    records = records_of(SCORES)
    summary = summarize(records, REPS)
    path = plot_profiles(records, tmp_path / "profile.png", title="t", reps=REPS)
    assert (tmp_path / "profile.png").stat().st_size > 0 and path.endswith("profile.png")
    text, files = comparison_section(summary[:2], records[:6], str(tmp_path), REPS)
    assert files == [str(tmp_path / "performance_profiles.png")]
    assert "| a | wpl | 3 | 0.850 [" in text and "(performance_profiles.png)" in text
    section = report_section(summary, records, [("wpl", "q")], str(tmp_path / "r"), REPS)
    assert section["files"] == [str(tmp_path / "r" / "performance_profiles.png")]
    assert "| wpl | 0.850 [" in section["markdown"]
    assert "| wpl | q | 1.00 [1.00, 1.00] |" in section["markdown"]
    assert [row["suite"] for row in section["rows"]].count(POOLED) == 2
    one_suite = report_section(summary[:2], records[:6], [("wpl", "q")], str(tmp_path), REPS)
    assert one_suite["files"] == [] and "| wpl | q | 1.00 [1.00, 1.00] |" in one_suite["markdown"]
    few = records_of({("s", "wpl"): [0.2]})
    assert "at least 2 seeds" in comparison_section(summarize(few), few, str(tmp_path))[0]
    assert report_section(summarize(few), few, [], str(tmp_path))["files"] == []
