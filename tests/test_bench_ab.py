"""bench/ab.py: the same-run A/B reads each row's headline figure and its direction."""

from __future__ import annotations

from bench.ab import compare, headline, higher_is_better


def test_headline_is_the_first_number_not_glued_to_a_word() -> None:
    assert headline("p99 0.58, max 1.95, B 50.01") == 0.58
    assert headline("78 ms (median 43)") == 78
    assert headline("2,000 / 1,000") == 2000
    assert headline("1.21× (428 vs 353 ms)") == 1.21
    assert headline("skipped") is None


def test_a_row_is_worse_only_past_the_margin_in_its_own_direction() -> None:
    assert higher_is_better("Sustainable rate, prose") and not higher_is_better("Render lag")
    rows = {
        r.name: r
        for r in compare(
            {"Render lag p95": [80, 82], "Sustainable rate": [2000, 2000], "CPU": [20, 20]},
            {"Render lag p95": [95, 95], "Sustainable rate": [1900, 1900], "CPU": [21, 21.5]},
            0.10,
        )
    }
    assert rows["Render lag p95"].passed is False  # 81 → 95: 17 % slower
    assert rows["Sustainable rate"].passed is True  # 5 % lower rate: within the margin
    assert rows["CPU"].passed is True
    assert compare({"x": [2000]}, {"x": [1700]}, 0.10)[0].passed is True  # lower "x" is better
