//! The inventory's two rules, as pure functions: what one round asks the cloud ([`plan`], the
//! cost model) and when the next round starts ([`next_round`], the cadence).
//!
//! **The cost model.** A round either lists the whole tenant (`P` pages of up to 1000
//! resources) or reads the resources it needs one by one (`T` GETs). It picks the cheaper:
//! GETs when `T < P`, the list otherwise (a tie lists: the same cost refreshes everything).
//! `T` counts the resources objects wait on (transitional, just written, asked for afresh, or
//! whose object is being deleted); on the periodic refresh it counts every resource an object
//! uses. A lookup that only a list can answer (the first round, a mark or name that a create or
//! upload may have made since the last list, an import filter looked up afresh) makes the
//! round a list. So a round costs at most `min(T, P)` calls, plus a login when a token
//! expires.
//!
//! **The cadence.** A round starts `fast` (`--inventory-interval`, 1 s) after the previous one
//! while anything waits, and at the resync period otherwise; never more often than keeps the
//! inventory within a quarter of the host's rate limit; after a failure, with a per-inventory
//! backoff (`fast` doubling to 60 s, at least the cloud's `Retry-After`).

use std::time::{Duration, Instant};

/// The share of a host's rate limit that one inventory's rounds may use.
pub const RATE_SHARE: f64 = 0.25;

/// The longest wait after failed rounds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a round would have to look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// Resources objects wait on: transitional, just written, asked for afresh, or whose object
    /// is being deleted.
    pub waiting: usize,
    /// Every resource an object uses: what the periodic refresh reads.
    pub used: usize,
    /// A lookup that only a whole list can answer is pending.
    pub list_needed: bool,
    /// This round is the periodic refresh of everything objects use.
    pub full: bool,
    /// Pages a whole list takes (from the last list; at least 1).
    pub pages: usize,
}

/// What one round does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to look at.
    Nothing,
    /// One paged list of the whole tenant.
    List,
    /// One GET per resource of the round (the waiting ones, or every used one on a full round).
    Get,
}

/// The cheaper way to look at what a round needs (see the module documentation).
pub fn plan(demand: Demand) -> Plan {
    let wanted = if demand.full {
        demand.used
    } else {
        demand.waiting
    };
    if demand.list_needed {
        return Plan::List;
    }
    if wanted == 0 {
        Plan::Nothing
    } else if wanted < demand.pages.max(1) {
        Plan::Get
    } else {
        Plan::List
    }
}

/// The inventory's settings of time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cadence {
    /// Between rounds while anything waits (`--inventory-interval`).
    pub fast: Duration,
    /// Between full refreshes when everything is steady (the resync period).
    pub steady: Duration,
    /// The host's rate limit in requests per second, if there is one.
    pub rate: Option<f64>,
}

/// What the last rounds did, as the cadence needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// When the last round started.
    pub last_start: Option<Instant>,
    /// When the last full refresh (a list, or GETs of everything used) started.
    pub last_full: Option<Instant>,
    /// Calls the last round made.
    pub last_calls: usize,
    /// Rounds failed in a row.
    pub failures: u32,
    /// What the cloud asked for with its last failure (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// When the next round starts. `busy` says something waits (see [`Demand`]); the first round
/// starts at once.
pub fn next_round(now: Instant, cadence: &Cadence, timing: &Timing, busy: bool) -> Instant {
    let Some(last) = timing.last_start else {
        return now;
    };
    if timing.failures > 0 {
        let doubling = 2u32.saturating_pow(timing.failures.saturating_sub(1).min(20));
        let wait = cadence
            .fast
            .saturating_mul(doubling)
            .min(MAX_BACKOFF)
            .max(timing.retry_after.unwrap_or_default());
        return last + wait;
    }
    let steady = timing.last_full.map_or(now, |full| full + cadence.steady);
    let next = if busy {
        steady.min(last + cadence.fast)
    } else {
        steady
    };
    next.max(last + budget_floor(cadence, timing.last_calls))
}

/// Whether a round starting at `now` is the periodic refresh of everything.
pub fn full_due(now: Instant, cadence: &Cadence, timing: &Timing) -> bool {
    timing
        .last_full
        .is_none_or(|full| now >= full + cadence.steady)
}

/// The shortest time between rounds that keeps `calls` per round within [`RATE_SHARE`] of
/// the host's rate limit.
fn budget_floor(cadence: &Cadence, calls: usize) -> Duration {
    match cadence.rate {
        Some(rate) if rate > 0.0 && calls > 0 => {
            Duration::try_from_secs_f64(calls as f64 / (rate * RATE_SHARE)).unwrap_or(MAX_BACKOFF)
        }
        _ => Duration::ZERO,
    }
}

/// Requests a list of `resources` takes at `page` per page: the full pages, and the last one,
/// which is not full (an empty one after a full page: only it says that the list ends).
pub fn pages(resources: usize, page: usize) -> usize {
    resources / page.max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(waiting: usize, used: usize, pages: usize) -> Demand {
        Demand {
            waiting,
            used,
            pages,
            ..Demand::default()
        }
    }

    #[test]
    fn the_cheaper_of_gets_and_list_pages() {
        let cases: Vec<(&str, Demand, Plan)> = vec![
            ("nothing waits", demand(0, 1000, 1), Plan::Nothing),
            (
                "one waits in a tenant of one page: a tie lists",
                demand(1, 1000, 1),
                Plan::List,
            ),
            ("many wait, one page", demand(900, 1000, 1), Plan::List),
            (
                "three wait in a tenant of ten pages",
                demand(3, 10_000, 10),
                Plan::Get,
            ),
            (
                "ten wait in a tenant of ten pages",
                demand(10, 10_000, 10),
                Plan::List,
            ),
            (
                "a lookup needs the list, whatever waits",
                Demand {
                    list_needed: true,
                    ..demand(0, 0, 10)
                },
                Plan::List,
            ),
            (
                "the periodic refresh of 1000 used in one page",
                Demand {
                    full: true,
                    ..demand(0, 1000, 1)
                },
                Plan::List,
            ),
            (
                "the periodic refresh of 5 used in a tenant of 10 pages",
                Demand {
                    full: true,
                    ..demand(0, 5, 10)
                },
                Plan::Get,
            ),
            (
                "the periodic refresh with nothing used",
                Demand {
                    full: true,
                    ..demand(0, 0, 1)
                },
                Plan::Nothing,
            ),
            (
                "pages unknown (0) counts as one",
                demand(1, 1, 0),
                Plan::List,
            ),
        ];
        for (name, demand, want) in cases {
            assert_eq!(plan(demand), want, "{name}");
        }
    }

    #[test]
    fn a_round_never_costs_more_than_the_cheaper_way() {
        for waiting in 0..30 {
            for pages in 1..15 {
                let calls = match plan(demand(waiting, waiting, pages)) {
                    Plan::Nothing => 0,
                    Plan::List => pages,
                    Plan::Get => waiting,
                };
                assert!(calls <= waiting.min(pages), "T={waiting} P={pages}");
            }
        }
    }

    const FAST: Duration = Duration::from_secs(1);
    const STEADY: Duration = Duration::from_secs(30);

    fn cadence(rate: Option<f64>) -> Cadence {
        Cadence {
            fast: FAST,
            steady: STEADY,
            rate,
        }
    }

    #[test]
    fn the_cadence_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let round = |last: Duration, full: Duration, calls: usize| Timing {
            last_start: Some(t0 + last),
            last_full: Some(t0 + full),
            last_calls: calls,
            ..Timing::default()
        };
        let cases: Vec<(&str, Cadence, Timing, bool, Instant)> = vec![
            (
                "the first round starts at once",
                cadence(Some(20.0)),
                Timing::default(),
                false,
                t0 + s(40),
            ),
            (
                "something waits: a second after the last round",
                cadence(Some(20.0)),
                round(s(10), s(10), 1),
                true,
                t0 + s(11),
            ),
            (
                "all steady: the resync period after the last full refresh",
                cadence(Some(20.0)),
                round(s(10), s(10), 1),
                false,
                t0 + s(40),
            ),
            (
                "steady after fast GET rounds: still from the last full refresh",
                cadence(Some(20.0)),
                round(s(25), s(10), 2),
                false,
                t0 + s(40),
            ),
            (
                "waiting, with the refresh due sooner than a fast round",
                cadence(Some(20.0)),
                round(s(39) + ms(500), s(10), 1),
                true,
                t0 + s(40),
            ),
            (
                "ten pages a round at 20 req/s: no more than a quarter of the budget",
                cadence(Some(20.0)),
                round(s(10), s(10), 10),
                true,
                t0 + s(12),
            ),
            (
                "no rate limit: no floor",
                cadence(None),
                round(s(10), s(10), 10),
                true,
                t0 + s(11),
            ),
        ];
        for (name, cadence, timing, busy, want) in cases {
            let now = t0 + s(40);
            assert_eq!(next_round(now, &cadence, &timing, busy), want, "{name}");
        }
    }

    #[test]
    fn failures_back_off_per_inventory() {
        let t0 = Instant::now();
        let failed = |failures, retry_after| Timing {
            last_start: Some(t0),
            last_full: Some(t0),
            failures,
            retry_after,
            ..Timing::default()
        };
        let c = cadence(Some(20.0));
        let wait = |timing: Timing| next_round(t0, &c, &timing, true) - t0;
        assert_eq!(wait(failed(1, None)), Duration::from_secs(1));
        assert_eq!(wait(failed(2, None)), Duration::from_secs(2));
        assert_eq!(wait(failed(4, None)), Duration::from_secs(8));
        assert_eq!(wait(failed(30, None)), MAX_BACKOFF);
        assert_eq!(
            wait(failed(1, Some(Duration::from_secs(5)))),
            Duration::from_secs(5),
            "the cloud's Retry-After is a floor"
        );
    }

    #[test]
    fn the_full_refresh_comes_at_the_resync_period() {
        let t0 = Instant::now();
        let c = cadence(None);
        let timing = Timing {
            last_start: Some(t0),
            last_full: Some(t0),
            ..Timing::default()
        };
        assert!(full_due(t0, &c, &Timing::default()));
        assert!(!full_due(t0 + Duration::from_secs(29), &c, &timing));
        assert!(full_due(t0 + STEADY, &c, &timing));
    }

    #[test]
    fn pages_of_a_list() {
        assert_eq!(pages(0, 1000), 1);
        assert_eq!(pages(999, 1000), 1);
        assert_eq!(pages(1000, 1000), 2, "a full page asks for the next one");
        assert_eq!(pages(1001, 1000), 2);
        assert_eq!(pages(10_000, 1000), 11);
        assert_eq!(pages(5, 0), 6);
    }
}
