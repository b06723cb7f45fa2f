//! What a round showed, and the run's final table.

use super::*;

/// What one round measured.
pub(super) struct Outcome {
    pub(super) fault: Fault,
    /// Whose elector led when the fault struck.
    pub(super) led_by: Who,
    /// The leader struck (its identity), and when (monotonic ns), for
    /// finding a round in the candidates' logs.
    pub(super) struck: String,
    pub(super) at: i128,
    /// Fault to the next term's first beat, when a new term was expected.
    pub(super) failover_ms: Option<f64>,
    /// Worst overlap of two terms that began in this round (ms; 0: none).
    pub(super) overlap_ms: f64,
    /// The same, where the earlier term was a Go elector's (reported, not
    /// a failure of tenure's: see RELIABILITY.md).
    pub(super) go_overlap_ms: f64,
    /// The same, where the earlier term was tenure's but another writer
    /// ended it under a valid lease (a Go elector's release of a lease it
    /// no longer held): the overlap is the stop after that write.
    pub(super) taken_overlap_ms: f64,
    /// Frozen-tree rounds: how long the old command ran after the resume.
    pub(super) tail_ms: Option<f64>,
    pub(super) stale_accepted: usize,
    pub(super) stale_rejected: usize,
    pub(super) tokens_rose: bool,
    /// Candidates found exited (and restarted) before this round: a
    /// `tenure run` that gives up is a finding.
    pub(super) exits: usize,
    /// Exits by design: client-go electors that lost a lease, `tenure run`s
    /// started while the store was down (they fail fast before campaigning).
    pub(super) exits_by_design: usize,
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Prints the table; true when no stale write was accepted and no overlap
/// happened within the tolerance, and beyond-tolerance skew was seen.
pub(super) fn report(
    options: &Options,
    outcomes: &[Outcome],
    failures: &[(usize, Fault, String)],
    took: Duration,
) -> bool {
    println!(
        "store {:?}, {:?} candidates, {} rounds, seed {}, {:.0} s; lease 2 s, renew deadline 1.5 s, retry 0.3 s",
        options.store,
        options.candidates,
        outcomes.len(),
        options.seed,
        took.as_secs_f64()
    );
    let mixed = options.candidates == CandidateKind::Mixed;
    if mixed {
        println!(
            "candidates: tenure run c0, c1; client-go g2; Istio i3. Overlap, tail and the pass rules are tenure's terms'; \
             a Go elector's term that ran on past the next term's start is in the last column"
        );
    }
    println!(
        "| fault | rounds | rounds with overlap | max overlap ms | frozen tail ms (max) | stale writes accepted | stale writes rejected | fail-over p50 / p99 / max ms | tokens rose |{}",
        if mixed {
            " rounds led by Go | Go term ran on: rounds, max ms | tenure term ended by a Go write: rounds, max overlap ms |"
        } else {
            ""
        }
    );
    println!(
        "|---|---|---|---|---|---|---|---|---|{}",
        if mixed { "---|---|---|" } else { "" }
    );
    let exits: usize = outcomes.iter().map(|o| o.exits).sum();
    println!("candidate processes that exited by themselves (restarted): {exits}");
    let by_design: usize = outcomes.iter().map(|o| o.exits_by_design).sum();
    println!(
        "exits by design, restarted: client-go electors that lost the lease (RunOrDie returns), \
         `tenure run`s started while the store was down (they fail fast before campaigning), \
         and Go electors killed after 10 s stuck in a release without a timeout: {by_design}"
    );
    println!(
        "rounds that failed (no stable leader, or stuck): {}",
        failures.len()
    );
    for (round, fault, why) in failures {
        println!("- round {round} ({}): {why}", fault.name());
    }
    let mut ok = exits == 0 && failures.is_empty();
    for fault in Fault::ALL {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.fault == fault).collect();
        if rows.is_empty() {
            continue;
        }
        let overlapping = rows.iter().filter(|o| o.overlap_ms > 0.0).count();
        let max_overlap = rows.iter().map(|o| o.overlap_ms).fold(0.0, f64::max);
        let tail = rows
            .iter()
            .filter(|o| o.led_by == Who::Tenure)
            .filter_map(|o| o.tail_ms)
            .fold(f64::NAN, f64::max);
        // A Go leader's term after the resume of a frozen tree is its
        // overrun too.
        let go_overrun = |o: &&Outcome| {
            let tail = if o.led_by == Who::Tenure {
                0.0
            } else {
                o.tail_ms.unwrap_or(0.0)
            };
            o.go_overlap_ms.max(tail)
        };
        let go_led = rows.iter().filter(|o| o.led_by != Who::Tenure).count();
        let go_rounds = rows.iter().filter(|o| go_overrun(o) > 0.0).count();
        let go_max = rows.iter().map(go_overrun).fold(0.0, f64::max);
        let accepted: usize = rows.iter().map(|o| o.stale_accepted).sum();
        let rejected: usize = rows.iter().map(|o| o.stale_rejected).sum();
        let mut failovers: Vec<f64> = rows.iter().filter_map(|o| o.failover_ms).collect();
        failovers.sort_by(f64::total_cmp);
        let rose = rows.iter().all(|o| o.tokens_rose);
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |{}",
            fault.name(),
            rows.len(),
            overlapping,
            max_overlap,
            if tail.is_nan() {
                "–".into()
            } else {
                format!("{tail:.1}")
            },
            accepted,
            rejected,
            if failovers.is_empty() {
                "–".into()
            } else {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    percentile(&failovers, 0.5),
                    percentile(&failovers, 0.99),
                    failovers.last().unwrap()
                )
            },
            if rose { "yes" } else { "no" },
            if mixed {
                let taken: Vec<f64> = rows
                    .iter()
                    .map(|o| o.taken_overlap_ms)
                    .filter(|t| *t > 0.0)
                    .collect();
                format!(
                    " {go_led} | {go_rounds}, {go_max:.0} | {}, {:.0} |",
                    taken.len(),
                    taken.iter().copied().fold(0.0, f64::max)
                )
            } else {
                String::new()
            }
        );
        ok &= accepted == 0 && rose;
        // A frozen leader may finish the beat it was in when frozen (it
        // checked validity just before); one that goes on working after
        // the resume did not check. The tail is not an overlap, but it is
        // bounded.
        if tail > TAIL_LIMIT_MS {
            println!(
                "{}: the old leader worked {tail:.1} ms after the resume (limit {TAIL_LIMIT_MS} ms)",
                fault.name()
            );
            ok = false;
        }
        if fault == Fault::SkewBeyond {
            // The oracle must see what a clock beyond the bound does.
            if overlapping == 0 {
                println!("beyond-tolerance skew produced no overlap: the oracle is blind");
                ok = false;
            }
        } else if overlapping > 0 {
            ok = false;
        }
    }
    ok
}
