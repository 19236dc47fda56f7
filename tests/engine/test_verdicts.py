"""Verdicts over seeds: every number checked against scipy or a hand computation on fixed
small samples."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from engine import curves, plots
from engine import verdicts as V
from engine.events import VAL_ACC, VAL_LOSS

FINAL = V.Summary("final", VAL_ACC)


def values(name, xs, seeds=None):
    seeds = seeds or [None] * len(xs)        # no seed: no paired test unless given
    return [V.RunValue(f"{name}{i}", f"{name} #{i}", float(x), "", seeds[i])
            for i, x in enumerate(xs)]


def group(name, xs, seeds=None):
    return V.group_stats(name, values(name, xs, seeds))


# --- group statistics ------------------------------------------------------------------------

def test_group_stats_match_a_hand_t_interval():
    g = group("adam", [70.0, 72.0, 75.0])
    m, s = 217 / 3, math.sqrt(((70 - 217 / 3) ** 2 + (72 - 217 / 3) ** 2 + (75 - 217 / 3) ** 2) / 2)
    half = stats.t.ppf(0.975, 2) * s / math.sqrt(3)
    assert (g.n, g.median, g.min, g.max) == (3, 72.0, 70.0, 75.0)
    assert g.mean == pytest.approx(m) and g.std == pytest.approx(s)
    assert (g.ci_low, g.ci_high) == (pytest.approx(m - half), pytest.approx(m + half))
    assert g.note == ""


def test_group_of_one_has_no_interval_and_says_so():
    g = group("solo", [81.5])
    assert (g.n, g.mean, g.ci_low, g.ci_high, g.std) == (1, 81.5, None, None, None)
    assert g.note == "one run: no interval"
    pair = V.compare_groups([g, group("b", [70.0, 71.0, 73.0])], FINAL)[0]
    assert pair.p_welch is None and pair.p_holm is None
    assert pair.verdict.startswith("Can't tell solo and b apart: solo has one run")


def folded_result(groups):
    return V.Verdicts(FINAL, (V.EXCEPT_SEED,), groups,
                      V.compare_groups(groups, FINAL, noun="seeds"))


def test_pairs_held_back_by_one_run_groups_are_said_in_one_line():
    singles = [group(name, [70.0 + i]) for i, name in enumerate("abcdef")]
    result = folded_result(singles)
    assert len(result.pairs) == 15 and all(V.held_by_one_run(p) for p in result.pairs)
    assert result.lines() == [
        "Can't tell 15 pairs apart: a, b, c, d, e and f have one run each, so there is no "
        "spread to judge their differences (1.0 to 5.0 points) against; 3 or more seeds per "
        "group would tell"]
    assert all(p.verdict.startswith("Can't tell") for p in result.pairs)   # each kept
    text = V.format_text(result)
    assert text.count("Can't tell") == 1 and text.count(" vs ") == 15
    same = folded_result([group(name, [70.0]) for name in "abc"])
    assert same.lines() == [
        "Can't tell 3 pairs apart: a, b and c have one run each and every group gave the same "
        "value, with no spread to say whether they differ; 3 or more seeds per group would tell"]


def test_real_pairs_keep_their_lines_beside_the_folded_one():
    seeded = [group("sgd", [60.0, 61.0, 62.0]), group("adam", [70.0, 71.0, 72.0])]
    result = folded_result(seeded + [group("x", [65.0]), group("y", [66.0])])
    lines = result.lines()
    assert lines[0].startswith("Probably real: adam ends higher than sgd")
    assert lines[1].startswith("Can't tell 5 pairs apart: ") and len(lines) == 2
    # fewer than ONE_RUN_FOLD such pairs: each keeps its own line
    two = folded_result([group("x", [65.0]), group("y", [66.0])])
    assert two.lines() == [two.pairs[0].verdict]
    assert two.lines()[0].startswith("Can't tell y and x apart: y has one run")


def test_pairs_with_a_group_without_values_are_said_in_one_line():
    seeded = [group(name, [60.0 + 5 * i, 61.0 + 5 * i, 62.0 + 5 * i])
              for i, name in enumerate(("sgd", "adam", "adamw"))]
    result = folded_result(seeded + [group("too hot", [float("nan")] * 2)])
    lines = result.lines()
    assert lines[-1] == ("Can't compare 3 pairs: too hot has no run with a value, so it is "
                         "compared with no other group")
    assert len(lines) == 4 and not any(line.startswith("Can't compare") for line in lines[:3])
    text = V.format_text(result)
    assert text.count("Can't compare") == 1 and text.count(" vs too hot: ") == 3


def test_groups_that_all_gave_one_value_are_said_in_one_line():
    # six groups at a 99% cap made 15 "Same: ... identical values" lines; two values here, so
    # the line must not name groups of different values as the same
    capped = [group(name, [99.0, 99.0]) for name in "abc"] + [group("d", [75.0, 75.0]),
                                                             group("e", [75.0, 75.0])]
    result = folded_result(capped)
    assert sum(V.held_as_same(p) for p in result.pairs) == 4          # ab, ac, bc, de
    lines = result.lines()
    assert lines[-1] == ("Same: a, b and c gave 99.0%; d and e gave 75.0%, identical in every "
                         "one of their seeds (4 pairs; no spread to test)")
    assert not any(line.startswith("Same:") for line in lines[:-1]) and len(lines) == 7
    text = V.format_text(result)
    assert text.count("Same:") == 1 and text.count(" vs ") == 4
    two = folded_result([group(name, [99.0, 99.0]) for name in "ab"])     # one pair: its own
    assert two.lines() == ["Same: a and b gave identical values (2 seeds each; no spread)"]


def test_identical_values_have_zero_spread_and_no_test():
    a, b = group("a", [80.0, 80.0, 80.0]), group("b", [75.0, 75.0, 75.0])
    assert a.std == 0.0 and (a.ci_low, a.ci_high) == (80.0, 80.0)
    assert a.note == "no spread: every run gave the same value"
    pair = V.compare_groups([a, b], FINAL)[0]
    assert pair.diff == 5.0 and pair.p_welch is None and (pair.ci_low, pair.ci_high) == (5, 5)
    assert pair.effect_size is None and pair.prob_superiority == 1.0
    assert pair.verdict == "No test: a ends higher than b by 5.0 points in every run (3 runs " \
                           "each; no spread)"
    same = V.compare_groups([a, group("c", [80.0, 80.0])], FINAL)[0]
    assert same.verdict == "Same: a and c gave identical values (3 and 2 runs; no spread)"


def test_bootstrap_intervals_are_scipys_percentile_bootstrap():
    x, y = np.array(A), np.array(B)

    def scipy_ci(data, statistic):
        res = stats.bootstrap(data, statistic, n_resamples=9999, method="percentile",
                              rng=np.random.default_rng(0))
        return pytest.approx((res.confidence_interval.low, res.confidence_interval.high))
    g = V.group_stats("adam", values("adam", A), "bootstrap")
    assert (g.ci_low, g.ci_high) == scipy_ci((x,), np.mean)
    assert g.ci_low >= x.min() and g.ci_high <= x.max()        # means of resamples of x
    pair = V.compare_groups([group("adam", A), group("sgd", B)], FINAL, interval="bootstrap")[0]
    assert (pair.ci_low, pair.ci_high) == scipy_ci((x, y), lambda a, b: a.mean() - b.mean())
    assert pair.p_welch == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    assert "(95% bootstrap CI " in pair.verdict
    with pytest.raises(ValueError, match="interval: 'z' is not allowed; allowed: t, bootstrap"):
        V.group_stats("a", values("a", A), "z")


# --- pairs -----------------------------------------------------------------------------------

A = [92.0, 93.5, 91.0]
B = [68.0, 69.5, 67.2, 70.1]


def test_welch_difference_interval_and_p_match_scipy_and_hand():
    pair = V.compare_pair(group("adam", A), group("sgd", B))
    a, b = np.array(A), np.array(B)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)          # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert pair.diff == pytest.approx(diff)
    assert (pair.ci_low, pair.ci_high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    t = diff / math.sqrt(va + vb)
    assert pair.p_welch == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert pair.p_welch == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_hedges_g_by_hand():
    a, b = np.array(A), np.array(B)
    pooled = math.sqrt((2 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 5)
    j = 1 - 3 / (4 * 7 - 9)
    assert V.hedges_g(a, b) == pytest.approx(j * (a.mean() - b.mean()) / pooled)
    assert V.hedges_g([1.0, 1.0], [1.0, 1.0]) is None


def test_probability_of_superiority_counts_ties_half_and_equals_mann_whitney():
    a, b = [1.0, 2.0, 3.0], [2.0, 2.0, 0.5]
    # pairs a>b: 1>0.5, 2>0.5, 3>2, 3>2, 3>0.5 = 5; ties: 2=2 twice = 2 -> (5 + 1) / 9
    assert V.prob_superiority(a, b) == pytest.approx(6 / 9)
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    assert V.prob_superiority(a, b) == pytest.approx(u / 9)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert V.holm([0.01, 0.04, None, 0.03]) == [pytest.approx(0.03), pytest.approx(0.06), None,
                                               pytest.approx(0.06)]
    assert V.holm([0.6, 0.5]) == [1.0, 1.0]


def test_compare_groups_applies_holm_over_all_pairs_and_baseline():
    gs = [group("a", A), group("b", B), group("c", [91.0, 92.0, 94.0])]
    pairs = V.compare_groups(gs, FINAL)
    # the better group (higher mean) comes first: c 92.3 > a 92.2 > b 68.7
    assert [(p.a, p.b) for p in pairs] == [("a", "b"), ("c", "a"), ("c", "b")]
    assert [p.p_holm for p in pairs] == pytest.approx(V.holm([p.p_welch for p in pairs]))
    base = V.compare_groups(gs, FINAL, baseline="b")
    assert [(p.a, p.b) for p in base] == [("a", "b"), ("c", "b")]
    with pytest.raises(ValueError, match="baseline: 'd' is not a group; allowed: 'a', 'b'"):
        V.compare_groups(gs, FINAL, baseline="d")


def test_paired_t_on_shared_seeds_matches_scipy():
    a = group("adam", [90.0, 85.0, 88.0, 91.0], seeds=[1, 2, 3, 4])
    b = group("sgd", [88.5, 84.0, 86.0, 60.0], seeds=[1, 2, 3, 9])     # seed 9 is not shared
    pair = V.compare_pair(a, b)
    x, y = np.array([90.0, 85.0, 88.0]), np.array([88.5, 84.0, 86.0])
    d = x - y
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert pair.paired_n == 3 and pair.paired_diff == pytest.approx(d.mean())
    assert pair.paired_p == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert (pair.paired_ci_low, pair.paired_ci_high) == (pytest.approx(d.mean() - half),
                                                         pytest.approx(d.mean() + half))
    no_share = V.compare_pair(group("a", [1.0, 2.0], [1, 2]), group("b", [1.0, 2.0], [3, 4]))
    assert no_share.paired_n == 0 and no_share.paired_p is None


def power_by_hand(n, delta, sigma, alpha):
    df, ncp = 2 * n - 2, delta / (sigma * math.sqrt(2 / n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return 1 - stats.nct.cdf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)


def test_seeds_needed_is_the_fewest_runs_with_80_percent_t_test_power():
    a, b = [80.0, 81.0, 83.0], [79.0, 80.5, 82.5]
    sigma = math.sqrt((2 * np.var(a, ddof=1) + 2 * np.var(b, ddof=1)) / 4)
    for delta, alpha in ((1.0, 0.05), (3.0, 0.05), (3.0, 0.05 / 3)):
        n = V.seeds_needed(a, b, delta, alpha)
        assert power_by_hand(n, delta, sigma, alpha) >= 0.8
        assert n == 2 or power_by_hand(n - 1, delta, sigma, alpha) < 0.8
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)
        assert n >= math.ceil(2 * z * z * sigma ** 2 / delta ** 2)   # never below the normal
    assert V.seeds_needed(a, b, 3.0, 0.05 / 3) > V.seeds_needed(a, b, 3.0)
    assert V.seeds_needed([1.0, 1.0], [1.0, 1.0], 1.0) is None     # no spread to go by
    assert V.seeds_needed([1.0], [2.0], 1.0) is None               # fewer than 3 runs


def test_verdict_lines_in_plain_words():
    adam = group("adam", [92.0, 93.0, 94.1])
    sgd = group("sgd", [68.0, 69.0, 69.8])
    clear = V.compare_groups([adam, sgd], FINAL, noun="seeds")[0]
    assert clear.verdict == (f"Probably real: adam ends higher than sgd by {clear.diff:.1f} "
                             f"points (95% CI of the difference {clear.ci_low:.1f} to "
                             f"{clear.ci_high:.1f}, Welch's test, Holm p {clear.p_holm:.2g}; "
                             "3 seeds each)")
    assert clear.diff == pytest.approx(24.1)
    close = V.compare_groups([group("ln", [80.0, 83.0]), group("bn", [81.0, 80.5])], FINAL,
                             noun="seeds")[0]
    assert close.p_holm > 0.05
    assert close.verdict.startswith(f"Can't tell with 2 seeds each: about "
                                    f"{close.seeds_needed} seeds per group would detect a "
                                    "1-point difference. ln - bn = ")
    assert close.seeds_needed == V.seeds_needed([80.0, 83.0], [81.0, 80.5], 1.0)
    wide = V.compare_groups([group("a", [80.0, 86.0]), group("b", [79.0, 81.0])], FINAL)[0]
    assert wide.diff == 3.0 and wide.p_holm > 0.05
    assert wide.seeds_needed_observed == V.seeds_needed([80.0, 86.0], [79.0, 81.0], 3.0)
    assert f"about {wide.seeds_needed} runs per group would detect a 1-point difference, " \
           f"about {wide.seeds_needed_observed} one as large as the 3.0 points seen. " \
        in wide.verdict
    loss = V.Summary("final", VAL_LOSS)
    lower = V.compare_groups([group("a", [0.30, 0.31, 0.29]), group("b", [0.50, 0.52, 0.51])],
                             loss)[0]
    assert lower.verdict.startswith("Probably real: a ends lower than b by 0.21 (95% CI of the "
                                    "difference 0.")   # sizes > 0
    worse_first = V.compare_groups([sgd, adam], FINAL, noun="seeds")[0]
    assert (worse_first.a, worse_first.b) == ("adam", "sgd")
    assert worse_first.verdict == clear.verdict
    base = V.compare_groups([adam, sgd], FINAL, baseline="adam")[0]
    assert (base.a, base.b, round(base.diff, 1)) == ("sgd", "adam", -24.1)
    assert base.verdict.startswith(f"Probably real: sgd ends lower than adam by 24.1 points "
                                   f"(95% CI of the difference {-base.ci_high:.1f} to "
                                   f"{-base.ci_low:.1f}, Welch's test")


# --- summaries from stored metrics -------------------------------------------------------------

def run(rid, seed=0, status="completed", optimizer="adam", reason="", last_step=4, batch=16):
    return {"id": rid, "name": rid, "status": status, "reason": reason, "last_step": last_step,
            "started_at": 100.0, "config": {"optimizer": optimizer, "seed": seed,
                                            "batch_size": batch}}


def frame_of(points):
    """points: {run_id: [(step, value), ...]} of val/acc (fractions); epoch = step / 2,
    time = 100 + 10 * step."""
    rows = [(rid, s, s / 2, VAL_ACC, v, 100.0 + 10 * s) for rid, pts in points.items()
            for s, v in pts]
    f = pd.DataFrame(rows, columns=["run", "step", "epoch", "name", "value", "time"])
    return f.assign(id=np.arange(1, len(f) + 1))


RUNS = [run("r1", 1), run("r2", 2), run("r3", 3, status="diverged", reason="loss is nan at step 3",
                                          last_step=3)]
FRAME = frame_of({"r1": [(1, 0.5), (2, 0.7), (3, 0.9), (4, 0.8)],
                  "r2": [(1, 0.4), (2, 0.6), (3, 0.65), (4, 0.7)],
                  "r3": [(1, 0.5), (2, float("nan"))]})


def test_final_value_names_diverged_and_unfinished_runs():
    runs = RUNS + [run("r4", 4, status="stopped", last_step=2)]
    frame = pd.concat([FRAME, frame_of({"r4": [(1, 0.3), (2, 0.4)]}).assign(id=[98, 99])])
    out = V.summarize_runs(frame, runs, FINAL)
    assert out["r1"].value == pytest.approx(80.0) and out["r2"].value == pytest.approx(70.0)
    assert math.isnan(out["r3"].value) and out["r3"].reason == "diverged at step 3: no final value"
    assert out["r3"].diverged
    assert out["r4"].reason == "stopped at step 2: no final value"
    g = V.group_stats("adam", list(out.values()))
    assert (g.n, len(g.values)) == (2, 4) and [v.name for v in g.missing] == ["r3", "r4"]
    assert g.diverged == ["r3"] and "2 of 4 runs without a value" in g.note
    assert g.row()["without_value"].startswith("r3: diverged at step 3")


def test_best_and_budget_summaries():
    best = V.summarize_runs(FRAME, RUNS, V.Summary("best", VAL_ACC))
    assert [best[r].value for r in ("r1", "r2", "r3")] == pytest.approx([90.0, 70.0, 50.0])
    at = V.summarize_runs(FRAME, RUNS, V.Summary("at_step", VAL_ACC, 3.5))
    assert at["r1"].value == pytest.approx(90.0) and at["r2"].value == pytest.approx(65.0)
    assert at["r3"].reason == "diverged at step 3, before the step budget 3.5"
    at_epoch = V.summarize_runs(FRAME, RUNS, V.Summary("at_epoch", VAL_ACC, 1.0))
    assert at_epoch["r1"].value == pytest.approx(70.0)
    at_s = V.summarize_runs(FRAME, RUNS[:2], V.Summary("at_seconds", VAL_ACC, 15.0))
    assert at_s["r1"].value == pytest.approx(50.0)              # seconds = 10 * step
    late = V.summarize_runs(FRAME, RUNS[:1], V.Summary("at_step", VAL_ACC, 10))
    assert late["r1"].reason == "its last val/acc point is at step 4, before the budget 10"


def test_time_to_target_first_crossing_after_smoothing_and_never_reaching_runs_named():
    s = V.Summary("steps_to", VAL_ACC, 65.0)
    out = V.summarize_runs(FRAME, RUNS, s)
    assert out["r1"].value == 2.0 and out["r2"].value == 3.0
    assert out["r3"].reason == "diverged at step 3 before reaching 65% (best 50)"
    never = V.summarize_runs(FRAME, RUNS[:2], V.Summary("steps_to", VAL_ACC, 85.0))
    assert math.isnan(never["r2"].value) and never["r2"].reason == "never reached 85% (best 70)"
    assert V.summarize_runs(FRAME, RUNS[:1], V.Summary("epochs_to", VAL_ACC, 65.0))["r1"].value == 1
    assert V.summarize_runs(FRAME, RUNS[:1], V.Summary("examples_to", VAL_ACC, 65.0))[
        "r1"].value == 32                                        # step 2 x batch 16
    assert V.summarize_runs(FRAME, RUNS[:1], V.Summary("seconds_to", VAL_ACC, 65.0))[
        "r1"].value == 20
    # smoothed with weight 0.5 (debiased EMA): r1 = 50, 63.33, 78.57 -> crosses 65 at step 3
    smooth = V.summarize_runs(FRAME, RUNS[:1], V.Summary("steps_to", VAL_ACC, 65.0, 0.5))
    assert smooth["r1"].value == 3.0


def test_run_table_gives_time_to_target_in_every_unit_and_names_runs_that_never_reach_it():
    import io

    from engine import export
    result = V.verdicts(FRAME, RUNS, V.Summary("epochs_to", VAL_ACC, 65.0), group_by=["seed"],
                        names={r["id"]: r["id"] for r in RUNS})
    table = result.run_table().set_index("run")
    # r1 crosses 65% at step 2: epoch 1 (step / 2), 2 x batch 16 examples, 20 s (10 s a step)
    assert table.loc["r1", ["value", "steps", "epochs", "examples", "seconds"]].tolist() == \
        [1.0, 2.0, 1.0, 32.0, 20.0]
    assert table.loc["r2", ["steps", "epochs", "examples", "seconds"]].tolist() == \
        [3.0, 1.5, 48.0, 30.0]
    assert table.loc["r3", "value"] is None or math.isnan(table.loc["r3", "value"])
    assert table.loc["r3", "without_value"] == "diverged at step 3 before reaching 65% (best 50)"
    assert all(table.loc["r3", c] is None or math.isnan(table.loc["r3", c])
               for c in ("steps", "epochs", "examples", "seconds"))
    text = V.format_text(result)
    assert "r1: reached at step 2, epoch 1, 32 examples, 20 s" in text
    assert "r3: reached" not in text
    rows = pd.read_csv(io.BytesIO(export.verdicts_csv(result)))
    runs = rows[rows["kind"] == "run"].set_index("run")
    assert runs.loc["r2", ["steps", "examples", "seconds"]].tolist() == [3.0, 48.0, 30.0]
    as_json = result.to_dict()["groups"]
    assert as_json[0]["runs"][0]["to_target"] == {"steps_to": 2.0, "epochs_to": 1.0,
                                                  "examples_to": 32.0, "seconds_to": 20.0}
    # other summaries have no time-to-target columns
    assert "steps" not in V.verdicts(FRAME, RUNS, FINAL).run_table()


def test_parse_summary_and_its_messages():
    assert V.parse_summary("final:val/acc") == V.Summary("final", VAL_ACC)
    assert V.parse_summary("steps_to:val/loss:0.3") == V.Summary("steps_to", VAL_LOSS, 0.3)
    assert V.parse_summary("at-step::500") == V.Summary("at_step", VAL_ACC, 500.0)
    with pytest.raises(ValueError, match="summary: 'last' is not allowed; allowed: final, best"):
        V.parse_summary("last:val/acc")
    with pytest.raises(ValueError, match="summary: steps_to needs a finite target"):
        V.parse_summary("steps_to:val/acc")
    with pytest.raises(ValueError, match="summary: 'x' in 'at_step:val/acc:x' is not a number"):
        V.parse_summary("at_step:val/acc:x")


# --- grouping and the whole verdict ----------------------------------------------------------

def test_grouping_except_seed_by_fields_and_bad_fields():
    runs = [run("a1", 1), run("a2", 2), run("s1", 1, optimizer="sgd"),
            run("s2", 2, optimizer="sgd")]
    groups = V.group_runs(runs, V.EXCEPT_SEED)
    assert {k: [r["id"] for r in v] for k, v in groups.items()} == {"adam": ["a1", "a2"],
                                                                    "sgd": ["s1", "s2"]}
    by_seed = V.group_runs(runs, ["seed"])
    assert list(by_seed) == ["seed 1", "seed 2"]
    both = V.group_runs(runs, ("optimizer", "seed"))
    assert list(both) == ["adam · seed 1", "adam · seed 2", "sgd · seed 1", "sgd · seed 2"]
    with pytest.raises(ValueError, match="group_by: 'colour' is not a config field; allowed: "):
        V.group_runs(runs, ["colour"])


def test_verdicts_end_to_end_with_json():
    runs = [run("a1", 1), run("a2", 2), run("a3", 3), run("s1", 1, optimizer="sgd"),
            run("s2", 2, optimizer="sgd"), run("s3", 3, optimizer="sgd")]
    finals = {"a1": 0.92, "a2": 0.93, "a3": 0.941, "s1": 0.68, "s2": 0.69, "s3": 0.698}
    frame = frame_of({rid: [(4, v)] for rid, v in finals.items()})
    out = V.verdicts(frame, runs, FINAL)
    d = out.to_dict()
    assert [g["name"] for g in d["groups"]] == ["adam", "sgd"]
    assert d["groups"][0]["n"] == 3 and d["groups"][0]["mean"] == pytest.approx(93.0333333)
    (pair,) = d["pairs"]
    assert (pair["a"], pair["b"], pair["paired_n"]) == ("adam", "sgd", 3)
    assert pair["diff"] == pytest.approx(24.1) and pair["prob_superiority"] == 1.0
    assert pair["verdict"].startswith("Probably real: adam ends higher than sgd by 24.1 points "
                                      "(95% CI of the difference ")
    assert pair["verdict"].endswith("3 seeds each). A paired test over the 3 shared seeds "
                                    f"gives 24.1 (95% CI {pair['paired_ci_low']:.1f} to "
                                    f"{pair['paired_ci_high']:.1f}), a second opinion")


# --- bands -----------------------------------------------------------------------------------

def test_band_edges_count_runs_per_step_and_start_at_two():
    long = pd.DataFrame({"step": [1, 2, 3], "x": [1, 2, 3], "y": [1.0, 2.0, 3.0]})
    short = pd.DataFrame({"step": [2, 3], "x": [2, 3], "y": [4.0, float("nan")]})
    third = pd.DataFrame({"step": [2], "x": [2], "y": [3.0]})
    st = curves.group_stats([long, short, third], "step")
    assert st["n"].tolist() == [1, 3, 1]
    lo, hi = V.band_edges(st, "ci")
    assert np.isnan([lo[0], hi[0], lo[2], hi[2]]).all()          # one run there: no band
    x = np.array([2.0, 4.0, 3.0])
    assert (lo[1], hi[1]) == pytest.approx(stats.t.interval(0.95, 2, loc=x.mean(),
                                                            scale=stats.sem(x)))
    assert V.band_edges(st, "std")[1][1] == pytest.approx(3.0 + x.std(ddof=1))   # sample std
    assert [v[1] for v in V.band_edges(st, "minmax")] == [2.0, 4.0]
    with pytest.raises(ValueError, match="band: 'iqr' is not allowed"):
        V.band_edges(st, "iqr")


def test_grouped_figure_says_what_its_band_is_and_how_many_runs_are_behind_each_point():
    runs = [run(f"r{i}", i) for i in range(3)]
    frame = frame_of({"r0": [(1, 0.5), (2, 0.6), (3, 0.7), (4, 0.8)],
                      "r1": [(1, 0.4), (2, 0.5), (3, 0.6)],
                      "r2": [(1, 0.45)]})
    fig = plots.build_figure(frame, runs, plots.ChartOptions(average_over="seed", band="ci"))
    (mean,) = [t for t in fig.data if t.meta["kind"] == "mean"]
    (band,) = [t for t in fig.data if t.meta["kind"] == "band"]
    assert list(mean.customdata) == [3, 2, 2, 1] and "runs %{customdata}" in mean.hovertemplate
    assert fig.layout.legend.title.text == "band: 95% CI of the mean; runs per point in the hover"
    assert band.name.endswith("(95% CI of the mean)")
    assert list(band.x) == [1, 2, 3, 3, 2, 1]                     # not at step 4 (one run)
    half = stats.t.ppf(0.975, 1) * stats.sem([60.0, 50.0])
    assert band.y[1] == pytest.approx(55.0 + half)



# --- exports ---------------------------------------------------------------------------------

def test_zip_export_holds_the_verdict_rows_and_the_strip_plot():
    import io
    import zipfile

    from engine import export
    runs = [run("a1", 1), run("a2", 2), run("s1", 1, optimizer="sgd"),
            run("s2", 2, optimizer="sgd")]
    frame = frame_of({"a1": [(4, 0.9)], "a2": [(4, 0.92)], "s1": [(4, 0.7)], "s2": [(4, 0.69)]})
    result = V.verdicts(frame, runs, FINAL)
    table = pd.read_csv(io.BytesIO(export.verdicts_csv(result)))
    assert table["kind"].tolist() == ["group", "group", "pair", "run", "run", "run", "run"]
    assert table["mean"][:2].tolist() == pytest.approx([91.0, 69.5])
    assert table["verdict"][2] == result.pairs[0].verdict
    assert table["run"][3:].tolist() == ["adam · seed 1", "adam · seed 2", "sgd · seed 1",
                                         "sgd · seed 2"]
    assert table["value"][3:].tolist() == pytest.approx([90.0, 92.0, 70.0, 69.0])
    fig = plots.build_figure(frame, runs)
    data = export.zip_bytes(fig, frame, runs, base="cmp", images={"png": b"p", "svg": b"s"},
                            verdicts=result)
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert {"cmp-verdicts.csv", "cmp-verdicts.json", "cmp-strip.html"} <= names
    assert ({"cmp-strip.png", "cmp-strip.svg"} <= names) == export.static_export_available()
    strip = plots.strip_figure(result)
    dots = [t for t in strip.data if t.meta["kind"] == "runs"]
    assert [sorted(t.y) for t in dots] == [pytest.approx([90.0, 92.0]),
                                           pytest.approx([69.0, 70.0])]
    means = [t for t in strip.data if t.meta["kind"] == "mean"]
    assert means[0].error_y.array[0] == pytest.approx(result.groups[0].ci_high - 91.0)
    assert "every run a dot, each group's mean ± its 95% CI" in strip.layout.title.text
    boot = plots.strip_figure(V.verdicts(frame, runs, FINAL, interval="bootstrap"))
    assert "each group's mean ± its 95% bootstrap CI" in boot.layout.title.text


def test_float_noise_is_no_spread():
    noisy = [0.58 * 100, 58.00000000000001, 0.5 * 100 + 0.01 * 8 * 100]
    assert np.ptp(noisy) > 0 and V.no_spread(noisy)
    g = group("a", noisy)
    assert g.std == 0.0 and g.ci_low == g.ci_high == g.mean
    pair = V.compare_pair(g, group("b", [50.0, 50.0]))
    assert pair.p_welch is None and pair.effect_size is None and pair.seeds_needed is None
    assert not V.no_spread([58.0, 58.001])


# --- scheduling never splits a group (issue 17) ------------------------------------------------

def scheduled_seeds():
    """Three seeds of one adam config, one packed, one not, one without diagnostics (they
    differ in how they were scheduled, never in what they are), and two sgd seeds."""
    return [run("a0", 0), {**run("a1", 1), "config": {**run("a1", 1)["config"], "pack": False}},
            {**run("a2", 2), "config": {**run("a2", 2)["config"], "diagnostics": False,
                                        "diag_every": 10, "device": "cpu"}},
            run("s0", 0, optimizer="sgd"), run("s1", 1, optimizer="sgd")]


def test_three_seeds_scheduled_differently_are_one_group_of_three():
    runs = scheduled_seeds()
    finals = {"a0": 0.92, "a1": 0.93, "a2": 0.94, "s0": 0.70, "s1": 0.71}
    out = V.verdicts(frame_of({rid: [(4, v)] for rid, v in finals.items()}), runs, FINAL)
    assert [(g.name, g.n) for g in out.groups] == [("adam", 3), ("sgd", 2)]
    assert [v.name for v in out.groups[0].values] == \
        ["adam · seed 0", "adam · seed 1", "adam · seed 2"]       # never "pack"
    (pair,) = out.pairs
    assert pair.p_welch is not None and pair.paired_n == 2
    assert V.group_key(runs[0]["config"], V.EXCEPT_SEED) == \
        V.group_key(runs[2]["config"], V.EXCEPT_SEED)
    # a group-by field list is unchanged: grouping by pack splits them as asked
    assert list(V.group_runs(runs[:3], ["pack"])) == ["pack", "no pack"]
    # averaging the curves over the seed gathers them too
    assert [len(g) for g in curves.group_runs(runs, "seed").values()] == [3, 2]


def test_cli_compare_json_counts_three_scheduled_seeds_as_one_group(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from engine.events import Evaluated, RunEnded, RunStatus
    from engine.store import RunStore
    base = {"dataset": "spirals", "optimizer": "adam", "lr": 0.01}
    configs = [{**base, "seed": 0, "pack": True}, {**base, "seed": 1, "pack": False},
               {**base, "seed": 2, "diagnostics": False},
               {**base, "optimizer": "sgd", "seed": 0}, {**base, "optimizer": "sgd", "seed": 1}]
    finals = [0.92, 0.93, 0.94, 0.70, 0.71]
    db = tmp_path / "runs.db"
    store = RunStore(db)
    for cfg, acc in zip(configs, finals):
        rid = store.create_run(cfg, tags=["three"])
        store.record(Evaluated(rid, 4, 1, {VAL_ACC: acc}))
        store.record(RunEnded(rid, RunStatus.COMPLETED, 4, ""))
    store.close()
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"), "TRAINLAB_DB": str(db)}
    done = subprocess.run([sys.executable, "-m", "engine", "compare", "tag:three", "--json"],
                          cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert [(g["name"], g["n"]) for g in groups] == [("adam", 3), ("sgd", 2)]
    assert groups[0]["mean"] == pytest.approx(93.0)


# --- experiment checks (issue 18): equivalence, differences and seeds that would tell --------

def test_reference_outcomes_three_ways_with_holm():
    same = V.two_sample_check([60.0, 61.0, 62.0, 61.5, 60.5] * 2,
                                     [61.0, 60.0, 62.0, 61.0, 60.5] * 2, 2.0)
    off = V.two_sample_check([50.0, 51.0, 52.0, 50.5, 51.5], [61.0, 60.0, 62.0, 61.5,
                                                                      60.5], 2.0)
    wide = V.one_value_check([40.0, 60.0], 50.0, 3.0)
    checks = V.reference_outcomes([same, off, wide])
    assert [c.outcome for c in checks] == ["consistent", "differs", "too few seeds"]
    # Holm over the three: the smallest p times 3
    p = stats.ttest_ind([50.0, 51.0, 52.0, 50.5, 51.5], [61.0, 60.0, 62.0, 61.5, 60.5],
                        equal_var=False).pvalue
    assert off.p_holm == pytest.approx(min(1.0, 3 * p))
    # one printed run's own seed spread (that of ours) can never be beaten down by our seeds
    assert wide.seeds_needed is None and "one printed run cannot show it" in wide.why


def test_consistent_needs_the_whole_90_percent_interval_inside_the_margin():
    ours, value = np.array([60.0, 62.0, 64.0, 61.0, 63.0]), 62.0
    check = V.one_value_check(ours, value, 4.0)
    se = ours.std(ddof=1) * math.sqrt(1 + 1 / 5)
    half = stats.t.ppf(0.95, 4) * se
    assert (check.low, check.high) == pytest.approx((ours.mean() - value - half,
                                                     ours.mean() - value + half))
    V.reference_outcomes([check])
    assert check.outcome == ("consistent" if half < 4.0 else "too few seeds")
    narrow = V.one_value_check(ours, value, half * 0.9)
    V.reference_outcomes([narrow])
    assert narrow.outcome == "too few seeds"       # never consistent on a wider interval


def test_seeds_that_would_tell_grow_with_the_spread():
    small = V.two_sample_check([60.0, 61.0, 59.0], [60.5, 59.5, 60.0, 61.0, 60.2], 1.5)
    large = V.two_sample_check([55.0, 65.0, 60.0], [60.5, 59.5, 60.0, 61.0, 60.2], 4.0)
    V.reference_outcomes([small])
    V.reference_outcomes([large])
    for check in (small, large):
        assert check.outcome == "too few seeds" and check.seeds_needed > 3
    assert V.one_sided_seeds([1.0, 2.0, 3.0], 1.0) > V.one_sided_seeds(
        [1.0, 2.0, 3.0], 3.0)
