//! How the benches print what they measured.

use hdrhistogram::Histogram;
use std::time::Duration;

use super::client::Tally;
use super::ingest::Mode;

/// `p50 …, p90 …, p99 …, max …` in milliseconds, or `empty` when nothing was recorded.
pub(super) fn latency_line(latency: &Histogram<u64>, empty: &str) -> String {
    if latency.is_empty() {
        return empty.to_owned();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.90)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    )
}

pub(super) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Single => "single",
        Mode::Batch => "batch",
    }
}

pub(super) struct Report<'a> {
    pub(super) mode: Mode,
    pub(super) concurrency: usize,
    pub(super) batch_size: u64,
    pub(super) warmup: u64,
    pub(super) elapsed: Duration,
    pub(super) stopped_by_count: bool,
    pub(super) tally: &'a Tally,
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tally;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let answered_events = t.accepted + t.duplicates;
        let answered_requests = t.requests - t.failed_requests;
        let stopped_by = if self.stopped_by_count {
            "the event count"
        } else {
            "the time limit"
        };
        writeln!(f, "mode          {}", mode_name(self.mode))?;
        writeln!(f, "concurrency   {}", self.concurrency)?;
        writeln!(f, "batch size    {}", self.batch_size)?;
        let warmup = match self.warmup {
            0 => "no warm-up".to_owned(),
            w => format!("a {w} s warm-up"),
        };
        writeln!(
            f,
            "measured      {secs:.2} s after {warmup}; stopped by {stopped_by}"
        )?;
        writeln!(
            f,
            "requests      {} ({answered_requests} answered 202)",
            t.requests
        )?;
        writeln!(
            f,
            "events        {answered_events} ({} accepted, {} duplicates, {} rejected)",
            t.accepted, t.duplicates, t.rejected
        )?;
        writeln!(f, "errors        {}", t.errors())?;
        if let Some(first) = &t.first_error {
            writeln!(f, "first error   {first}")?;
        }
        writeln!(f, "events/s      {:.0}", answered_events as f64 / secs)?;
        writeln!(f, "requests/s    {:.0}", answered_requests as f64 / secs)?;
        writeln!(
            f,
            "latency       {}",
            latency_line(&t.latency, "no request answered")
        )
    }
}
