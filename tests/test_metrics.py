"""compute_metrics on hand-made event sequences whose answers can be checked by hand."""

from __future__ import annotations

import pytest

from providers.events import (
    Cancelled,
    Connected,
    Event,
    Finished,
    ReasoningDelta,
    RequestSent,
    Retrying,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from providers.metrics import compute_metrics, percentile, status_of
from providers.prices import Price

MS = 1_000_000  # ns per ms
T0 = 1_000 * MS  # an arbitrary perf_counter origin


def at(ms: float) -> int:
    return T0 + int(ms * MS)


def test_plain_stream_with_usage() -> None:
    # t0 at 0; first token at 300 ms; then 9 tokens 20 ms apart (50 tok/s); usage says 10.
    events: list[Event] = [RequestSent(at(0))]
    events += [TextDelta(at(300 + 20 * i), "tok ") for i in range(10)]
    events += [Usage(at(481), prompt=100, completion=10), Finished(at(482), "stop")]
    m = compute_metrics(events, t_submit_ns=at(-5))
    assert m.status == "complete"
    assert m.ttft_ms == pytest.approx(300)
    assert m.ttfo_ms == pytest.approx(300)
    # (n - n1) / (tL - tF) = (10 - 1) / 0.180 s = 50 tok/s
    assert m.decode_tps == pytest.approx(50.0)
    assert m.e2e_ms == pytest.approx(480)
    assert m.client_overhead_ms == pytest.approx(5)
    assert m.output_tokens == 10 and not m.output_tokens_estimated
    assert m.itl_p50_ms == pytest.approx(20) and m.itl_p95_ms == pytest.approx(20)
    assert m.stalls == 0
    assert m.overall_tps == pytest.approx(10 / 0.480)


def test_batched_first_chunk_does_not_inflate_decode_rate() -> None:
    # The first event carries 5 tokens (5 × "abcd"), then 10 single tokens 10 ms apart.
    events: list[Event] = [RequestSent(at(0)), TextDelta(at(100), "abcd" * 5)]
    events += [TextDelta(at(110 + 10 * i), "abcd") for i in range(10)]
    events += [Usage(at(300), prompt=10, completion=15), Finished(at(300), "stop")]
    m = compute_metrics(events)
    assert m.ttft_ms == pytest.approx(100)
    # n1 = 5 (by character share: 15 × 20/60), so (15 - 5) / (0.200 - 0.100) s = 100 tok/s.
    assert m.decode_tps == pytest.approx(100.0)


def test_exact_token_counts_per_chunk_are_used_for_n1() -> None:
    events: list[Event] = [RequestSent(at(0)), TextDelta(at(50), "x", tokens=4)]
    events += [TextDelta(at(60 + 10 * i), "y", tokens=1) for i in range(6)]
    events += [Usage(at(200), prompt=1, completion=10), Finished(at(200), "stop")]
    m = compute_metrics(events)
    # (10 - 4) / (0.110 - 0.050) = 100 tok/s
    assert m.decode_tps == pytest.approx(100.0)


def test_hidden_reasoning_tokens_are_not_decode_output() -> None:
    # An o-series style model: usage reports 110 completion tokens of which 100 were reasoning
    # it never streamed; only 10 visible tokens arrived, 10 ms apart.
    events: list[Event] = [RequestSent(at(0))]
    events += [TextDelta(at(2000 + 10 * i), "w") for i in range(10)]
    events += [
        Usage(at(2100), prompt=50, completion=110, reasoning=100),
        Finished(at(2100), "stop"),
    ]
    price = Price(input=1.0, output=4.0)
    m = compute_metrics(events, price=price)
    assert m.output_tokens == 10
    assert m.reasoning_tokens == 100
    assert m.decode_tps == pytest.approx(9 / 0.090)
    # Billing counts all 110 completion tokens: (50 × 1 + 110 × 4) / 1e6
    assert m.cost_usd == pytest.approx((50 + 440) / 1e6)


def test_streamed_reasoning_counts_as_output_and_ttfo_differs() -> None:
    events: list[Event] = [RequestSent(at(0))]
    events += [ReasoningDelta(at(100 + 10 * i), "think") for i in range(5)]
    events += [TextDelta(at(150 + 10 * i), "ans") for i in range(5)]
    events += [Usage(at(200), prompt=5, completion=10, reasoning=5), Finished(at(200), "stop")]
    m = compute_metrics(events)
    assert m.ttft_ms == pytest.approx(100)
    assert m.ttfo_ms == pytest.approx(150)
    assert m.output_tokens == 10
    assert m.decode_tps == pytest.approx(9 / 0.090)


def test_cached_tokens_cost() -> None:
    events: list[Event] = [RequestSent(at(0)), TextDelta(at(10), "a"), TextDelta(at(20), "b")]
    events += [Usage(at(30), prompt=1000, completion=2, cached=800), Finished(at(30), "stop")]
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    m = compute_metrics(events, price=price)
    # (200 × 2 + 800 × 0.5 + 2 × 8) / 1e6
    assert m.cost_usd == pytest.approx((400 + 400 + 16) / 1e6)
    assert m.cached_tokens == 800


def test_no_usage_is_estimated_from_events() -> None:
    events: list[Event] = [RequestSent(at(0))]
    events += [TextDelta(at(100 + 10 * i), " word") for i in range(11)]
    events += [Finished(at(300), "stop")]
    m = compute_metrics(events, price=Price(1.0, 1.0), prompt_estimate=20)
    assert m.output_tokens == 11 and m.output_tokens_estimated
    assert m.decode_tps == pytest.approx(10 / 0.100)
    assert m.input_tokens is None
    assert m.cost_usd == pytest.approx((20 + 11) / 1e6)


def test_no_usage_batched_events_estimate_by_characters() -> None:
    events: list[Event] = [RequestSent(at(0))]
    events += [TextDelta(at(100 + 10 * i), "x" * 40) for i in range(5)]
    events += [Finished(at(300), "stop")]
    m = compute_metrics(events)
    assert m.output_tokens == 50 and m.output_tokens_estimated  # 200 chars / 4


def test_single_token_event_has_no_decode_rate() -> None:
    events: list[Event] = [
        RequestSent(at(0)),
        TextDelta(at(100), "hi"),
        Usage(at(101), prompt=1, completion=1),
        Finished(at(101), "stop"),
    ]
    m = compute_metrics(events)
    assert m.ttft_ms == pytest.approx(100)
    assert m.decode_tps is None


def test_tool_call_first_sets_ttft_but_not_ttfo() -> None:
    events: list[Event] = [
        RequestSent(at(0)),
        ToolCallDelta(at(40), 0, "id", "f", ""),
        ToolCallDelta(at(50), 0, None, None, "{}"),
        Finished(at(60), "tool_calls"),
    ]
    m = compute_metrics(events)
    assert m.ttft_ms == pytest.approx(40)
    assert m.ttfo_ms is None
    assert m.status == "complete"


def test_retries_are_not_folded_into_ttft() -> None:
    events: list[Event] = [
        RequestSent(at(0)),
        Retrying(at(5), attempt=2, delay_s=1.0, kind="rate_limit", message="429"),
        Connected(at(1005), connect_ns=2 * MS),
        RequestSent(at(1006), attempt=2),
        TextDelta(at(1106), "a"),
        TextDelta(at(1116), "b"),
        Finished(at(1120), "stop"),
    ]
    m = compute_metrics(events, t_submit_ns=at(-1))
    assert m.retries == 1
    assert m.retry_wait_ms == pytest.approx(1001)
    assert m.ttft_ms == pytest.approx(100)
    assert m.connect_ms == pytest.approx(2)
    # Enter → t0 is 1007 ms, of which 1001 ms were the retry wait: 6 ms of our own overhead.
    assert m.client_overhead_ms == pytest.approx(6)


def test_stalls_and_itl_percentiles() -> None:
    events: list[Event] = [
        RequestSent(at(0)),
        TextDelta(at(10), "a"),
        TextDelta(at(20), "b"),
        TextDelta(at(1520), "c"),
        TextDelta(at(1530), "d"),
        Finished(at(1530), "stop"),
    ]
    m = compute_metrics(events, stall_s=1.0)
    assert m.stalls == 1
    assert m.itl_max_ms == pytest.approx(1500)
    assert m.itl_p50_ms == pytest.approx(10)


@pytest.mark.parametrize(
    ("tail", "status"),
    [
        ([Finished(at(9), "stop")], "complete"),
        ([Finished(at(9), "length")], "length"),
        ([Finished(at(9), "content_filter")], "filtered"),
        ([Finished(at(9), "tool_calls")], "complete"),
        ([StreamError(at(9), "interrupted", "dropped")], "interrupted"),
        ([StreamError(at(9), "remote_error", "boom")], "error"),
        ([Cancelled(at(9))], "cancelled"),
        ([], "streaming"),
    ],
)
def test_status(tail: list[Event], status: str) -> None:
    events: list[Event] = [RequestSent(at(0)), TextDelta(at(5), "x"), *tail]
    assert status_of(events) == status
    assert compute_metrics(events).status == status


def test_reported_cost_wins_over_price_table() -> None:
    events: list[Event] = [
        RequestSent(at(0)),
        TextDelta(at(5), "x"),
        Usage(at(6), prompt=10, completion=1, cost_usd=0.0042),
        Finished(at(6), "stop"),
    ]
    m = compute_metrics(events, price=Price(100.0, 100.0))
    assert m.cost_usd == pytest.approx(0.0042) and m.cost_reported


def test_unknown_price_is_none_not_zero() -> None:
    events: list[Event] = [
        RequestSent(at(0)),
        TextDelta(at(5), "x"),
        Usage(at(6), prompt=10, completion=1),
        Finished(at(6), "stop"),
    ]
    assert compute_metrics(events).cost_usd is None


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95)


def test_to_json_has_the_documented_keys() -> None:
    from providers.metrics import JSON_KEYS

    events: list[Event] = [RequestSent(at(0)), TextDelta(at(5), "x"), Finished(at(6), "stop")]
    d = compute_metrics(events).to_json()
    assert set(JSON_KEYS) <= set(d)


def test_sparkline_last_bucket_is_a_rate_over_the_time_it_covers() -> None:
    """A steady 100 tok/s must draw flat: the last, partial bucket is no dip."""
    from providers.events import TextDelta
    from tui.session.conversation import LiveRun

    run = LiveRun("mock/m", 0, None, 10)
    ms = 1_000_000
    run.feed([TextDelta(t_ns=1000 * ms + i * 10 * ms, text="x ") for i in range(111)])  # 1.1 s
    rates = run.spark_rates()
    assert len(rates) == 5
    assert rates[:4] == [100.0, 100.0, 100.0, 100.0]
    assert rates[4] == pytest.approx(100, rel=0.02)  # 11 tokens over the 110 ms they take
    short = LiveRun("mock/m", 0, None, 10)
    short.feed([TextDelta(t_ns=1000 * ms + i * 10 * ms, text="x ") for i in range(28)])
    assert short.spark_rates() == [100.0]  # 3 tokens over 20 ms of the second bucket: left out


def test_sparkline_is_scaled_from_zero_one_column_a_bucket() -> None:
    from tui.widgets.status_bar import RateSparkline

    spark = RateSparkline()
    spark.data = [100.0, 99.0, 101.0, 100.0]  # steady: no full-height jitter
    assert spark.render() == " " * 12 + "████"
    spark.data = [50.0, 100.0, 0.0]
    assert spark.render() == " " * 13 + "▅█▁"
    spark.data = [0.0, 0.0]
    assert spark.render() == " " * 14 + "▁▁"
