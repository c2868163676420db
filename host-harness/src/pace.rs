//! Spacing each tenant's requests to a console, so that a burst of calls
//! (a playbook isolating 200 hosts, a backlog of threat pulls) waits its
//! turn in the host instead of running into the console's rate limit.
//!
//! A console limits requests per token, and a tenant's calls share one
//! token; each call runs in a fresh instance that remembers nothing, so
//! only the host can see them all. The pacing is the generic cell rate
//! algorithm: a burst of `burst` requests goes at once, then one every
//! `1 / per_second`, and each request reserves its turn when it is sent.
//! A request whose call ends before its turn comes (a deadline, a CPU
//! budget, an embedder that gave up) gives the turn back, and the tenant's
//! next request takes it: a cancelled playbook must not leave phantom
//! turns that hold up the admin's next isolation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tenant's request rate to one console host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    /// Requests per second, once the burst is used up. Above zero.
    pub per_second: u32,
    /// Requests that may go at once after a quiet spell. Above zero.
    pub burst: u32,
}

impl RequestRate {
    /// `per_second` requests a second, in bursts of up to `burst`.
    pub fn new(per_second: u32, burst: u32) -> RequestRate {
        RequestRate { per_second, burst }
    }

    /// The time between two requests once the burst is used up.
    fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }
}

/// A request rate for the paths under one prefix of a console's API: a
/// console limits each part of its API on its own (SentinelOne publishes a
/// rate per path prefix), so a burst of threat pulls need not slow an
/// isolation, and the strictest limit need not slow every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRate {
    /// The path prefix, from its leading `/`: `/web/api/v2.1/agents`
    /// covers `/web/api/v2.1/agents?ids=1` and `/web/api/v2.1/agents/actions/disconnect`,
    /// never `/web/api/v2.1/agents-summary`.
    pub prefix: String,
    /// The rate for requests under `prefix`.
    pub rate: RequestRate,
}

impl PathRate {
    /// `rate` for the requests under `prefix`.
    pub fn new(prefix: &str, rate: RequestRate) -> PathRate {
        PathRate {
            prefix: prefix.to_owned(),
            rate,
        }
    }

    /// The rates SentinelOne publishes for the paths this connector uses,
    /// per API token, as requests per second (burst): `agents` (with its
    /// actions) 25 (1), `threats` 10 (50), `user` 2 (5) and `users` 40 (80),
    /// under `/web/api/v2.1`. The table comes from the community Go SDK,
    /// which calls it the official one; a console configured otherwise
    /// needs its own figures.
    pub fn sentinelone() -> Vec<PathRate> {
        [
            ("agents", 25, 1),
            ("threats", 10, 50),
            ("user", 2, 5),
            ("users", 40, 80),
        ]
        .into_iter()
        .map(|(path, per_second, burst)| {
            PathRate::new(
                &format!("/web/api/v2.1/{path}"),
                RequestRate::new(per_second, burst),
            )
        })
        .collect()
    }

    /// Whether `path` (with its query) is under this prefix: equal to it,
    /// or continuing it with `/` or `?`.
    pub(crate) fn covers(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    }
}

/// Where a turn could not be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoTurn {
    /// How long from now the request's turn would have come.
    pub(crate) wait: Duration,
}

/// The next free turn of every tenant and console host that has sent
/// recently.
#[derive(Default)]
pub(crate) struct Pacer {
    turns: Mutex<Turns>,
}

/// A tenant and a bucket (a console host, then the path prefix whose rate
/// applies).
type Key = (Arc<str>, String);

#[derive(Default)]
struct Turns {
    /// Per tenant and bucket, where its requests stand.
    next: HashMap<Key, Bucket>,
    /// The size at which entries gone quiet are next swept out: twice what
    /// the last sweep left, so many busy tenants do not make every new
    /// entry pay for a sweep.
    sweep_at: usize,
}

struct Bucket {
    /// When the next request would be on time if none had gone early (the
    /// algorithm's "theoretical arrival time"). A time already past means
    /// the burst is full again, the same as no entry.
    next: Instant,
    /// Turns still to come that were reserved and given back: a new request
    /// takes the earliest rather than a turn after `next`, which counts them
    /// as taken. Taking exactly a given-back turn keeps the spacing the
    /// rate promises; one already past is dropped, since sending it late
    /// could crowd the requests after it.
    returned: Vec<Instant>,
}

impl Bucket {
    /// Whether the bucket still holds anything a later request must see.
    fn busy(&self, now: Instant) -> bool {
        self.next > now || self.returned.iter().any(|&at| at > now)
    }

    /// Where in `returned` the earliest returned turn still to come is, if
    /// it is earlier than `natural`; drops those already past.
    fn earliest_returned(&mut self, now: Instant, natural: Instant) -> Option<usize> {
        self.returned.retain(|&at| at >= now);
        let (i, &at) = self
            .returned
            .iter()
            .enumerate()
            .min_by_key(|&(_, at)| *at)?;
        (at < natural).then_some(i)
    }
}

/// A reserved turn. Dropped before [`Reservation::taken`], because its
/// request's call ended while it waited, it gives the turn back. The call
/// keeps a [`Reservation::copy`]: a dropped call's request futures are
/// only cancelled later, when the executor gets to them, and by then the
/// tenant's next call may already have asked for a turn.
pub(crate) struct Reservation(Arc<Held>);

struct Held {
    pacer: Arc<Pacer>,
    key: Key,
    /// When the request may be sent.
    at: Instant,
    /// What the bucket's `next` was set to, less one interval, when this
    /// turn was reserved after it: if `next` is still that plus one
    /// interval, no later turn was reserved and `next` simply goes back.
    /// `None` for a returned turn taken again.
    after: Option<(Instant, Duration)>,
    /// Until the request goes, or the turn is given back.
    held: AtomicBool,
}

impl Reservation {
    /// When the request may be sent.
    pub(crate) fn at(&self) -> Instant {
        self.0.at
    }

    /// The request's turn has come and it goes: the turn is used.
    pub(crate) fn taken(self) {
        self.0.held.store(false, Ordering::Release);
    }

    /// Another hold on the same turn: whichever is dropped first while the
    /// turn is unused gives it back.
    pub(crate) fn copy(&self) -> Reservation {
        Reservation(self.0.clone())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.0.held.swap(false, Ordering::AcqRel) {
            self.0.pacer.give_back(&self.0, Instant::now());
        }
    }
}

impl Pacer {
    /// Entries kept before the first sweep.
    const SWEEP_ABOVE: usize = 1024;

    /// Reserves a turn for one request of `tenant` to `bucket` (a console
    /// host, followed by the path prefix when the rate is a [`PathRate`]'s)
    /// at `rate`: the earliest turn given back and still to come, or else
    /// the next on time (`now` or later). A turn later than `latest` (the
    /// call's deadline, when it has one) is not reserved: the request could
    /// not be sent in time, so it must not hold up the tenant's later
    /// requests either.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        bucket: &str,
        rate: RequestRate,
        now: Instant,
        latest: Option<Instant>,
    ) -> Result<Reservation, NoTurn> {
        let interval = rate.interval();
        let tolerance = interval * rate.burst.max(1).saturating_sub(1);
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.next.len() >= turns.sweep_at.max(Pacer::SWEEP_ABOVE) {
            turns.next.retain(|_, bucket| bucket.busy(now));
            turns.sweep_at = turns.next.len() * 2;
        }
        let key = (tenant.clone(), bucket.to_owned());
        let entry = turns.next.entry(key.clone()).or_insert(Bucket {
            next: now,
            returned: Vec::new(),
        });
        let due = entry.next.max(now);
        let natural = due.checked_sub(tolerance).map_or(now, |t| t.max(now));
        let returned = entry.earliest_returned(now, natural);
        let at = returned.map_or(natural, |i| entry.returned[i]);
        if latest.is_some_and(|latest| at > latest) {
            return Err(NoTurn { wait: at - now });
        }
        let after = match returned {
            Some(i) => {
                entry.returned.swap_remove(i);
                None
            }
            None => {
                entry.next = due + interval;
                Some((due, interval))
            }
        };
        Ok(Reservation(Arc::new(Held {
            pacer: self.clone(),
            key,
            at,
            after,
            held: AtomicBool::new(true),
        })))
    }

    /// Gives back the turn of `reservation`, whose request was never sent.
    /// A turn already come is not given back: the requests after it were
    /// spaced from it.
    fn give_back(&self, reservation: &Held, now: Instant) {
        if reservation.at <= now {
            return;
        }
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = turns.next.get_mut(&reservation.key) else {
            return;
        };
        match reservation.after {
            // The last turn reserved: the bucket steps back, and its burst
            // refills as if the request had never been asked for.
            Some((due, interval)) if bucket.next == due + interval => bucket.next = due,
            _ => bucket.returned.push(reservation.at),
        }
    }

    /// Tenant and host pairs whose burst is not full again yet.
    #[cfg(test)]
    fn busy(&self, now: Instant) -> usize {
        let turns = self.turns.lock().unwrap();
        turns.next.values().filter(|b| b.busy(now)).count()
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.turns.lock().unwrap().next.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    const HOST: &str = "u1.sentinelone.net";

    /// A turn reserved and used, as a request sent at it uses it.
    fn take(
        pacer: &Arc<Pacer>,
        tenant: &Arc<str>,
        bucket: &str,
        rate: RequestRate,
        now: Instant,
        latest: Option<Instant>,
    ) -> Result<Instant, NoTurn> {
        let reserved = pacer.reserve(tenant, bucket, rate, now, latest)?;
        let at = reserved.at();
        reserved.taken();
        Ok(at)
    }

    /// Turns of `count` requests sent at `now`, as offsets from it.
    fn turns(
        pacer: &Arc<Pacer>,
        t: &Arc<str>,
        rate: RequestRate,
        now: Instant,
        n: usize,
    ) -> Vec<u128> {
        let latest = Some(now + Duration::from_secs(3600));
        (0..n)
            .map(|_| {
                let turn = take(pacer, t, HOST, rate, now, latest).unwrap();
                (turn - now).as_millis()
            })
            .collect()
    }

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(10, 3);
        assert_eq!(
            turns(&pacer, &tenant("a"), rate, now, 6),
            [0, 0, 0, 100, 200, 300]
        );
    }

    #[test]
    fn a_burst_of_one_spaces_every_request() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(4, 1);
        assert_eq!(
            turns(&pacer, &tenant("a"), rate, now, 4),
            [0, 250, 500, 750]
        );
    }

    #[test]
    fn the_burst_refills_with_time() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(10, 2);
        let a = tenant("a");
        assert_eq!(turns(&pacer, &a, rate, now, 2), [0, 0]);
        // 100 ms later one request's worth has come back, 200 ms later both.
        assert_eq!(
            turns(&pacer, &a, rate, now + Duration::from_millis(100), 2),
            [0, 100]
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(turns(&pacer, &a, rate, later, 3), [0, 0, 100]);
    }

    #[test]
    fn tenants_and_hosts_are_paced_apart() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        let latest = Some(now + Duration::from_secs(60));
        let (a, b) = (tenant("a"), tenant("b"));
        assert_eq!(take(&pacer, &a, HOST, rate, now, latest), Ok(now));
        assert_eq!(take(&pacer, &b, HOST, rate, now, latest), Ok(now));
        assert_eq!(
            take(&pacer, &a, "other.example", rate, now, latest),
            Ok(now)
        );
        let second = take(&pacer, &a, HOST, rate, now, latest).unwrap();
        assert_eq!(second - now, Duration::from_secs(1));
    }

    #[test]
    fn a_turn_past_the_latest_is_refused_and_not_reserved() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        let a = tenant("a");
        let latest = Some(now + Duration::from_millis(1500));
        assert_eq!(take(&pacer, &a, HOST, rate, now, latest), Ok(now));
        let second = take(&pacer, &a, HOST, rate, now, latest).unwrap();
        assert_eq!(second - now, Duration::from_secs(1));
        let refused = take(&pacer, &a, HOST, rate, now, latest);
        assert_eq!(
            refused,
            Err(NoTurn {
                wait: Duration::from_secs(2)
            })
        );
        // The refusal took nothing: a call with more time gets that turn.
        let far = Some(now + Duration::from_secs(60));
        let third = take(&pacer, &a, HOST, rate, now, far).unwrap();
        assert_eq!(third - now, Duration::from_secs(2));
    }

    #[test]
    fn a_turn_given_back_is_taken_by_the_next_request() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        let (a, far) = (tenant("a"), Some(now + Duration::from_secs(60)));
        assert_eq!(take(&pacer, &a, HOST, rate, now, far), Ok(now));
        let second = pacer.reserve(&a, HOST, rate, now, far).unwrap();
        let third = pacer.reserve(&a, HOST, rate, now, far).unwrap();
        assert_eq!(second.at() - now, Duration::from_secs(1));
        assert_eq!(third.at() - now, Duration::from_secs(2));
        // The second request's call ends while it waits: its turn is free.
        drop(second);
        let next = take(&pacer, &a, HOST, rate, now, far).unwrap();
        assert_eq!(next - now, Duration::from_secs(1));
        // Then the queue goes on after the third.
        let after = take(&pacer, &a, HOST, rate, now, far).unwrap();
        assert_eq!(after - now, Duration::from_secs(3));
        third.taken();
    }

    #[test]
    fn the_last_turn_given_back_steps_the_bucket_back() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        let (a, far) = (tenant("a"), Some(now + Duration::from_secs(60)));
        assert_eq!(take(&pacer, &a, HOST, rate, now, far), Ok(now));
        for _ in 0..3 {
            let waiting = pacer.reserve(&a, HOST, rate, now, far).unwrap();
            assert_eq!(waiting.at() - now, Duration::from_secs(1));
            drop(waiting);
        }
        let turns = turns(&pacer, &a, rate, now, 2);
        assert_eq!(turns, [1000, 2000], "nothing was left behind");
    }

    #[test]
    fn a_turn_already_come_is_not_given_back() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        let (a, far) = (tenant("a"), Some(now + Duration::from_secs(60)));
        // Its turn was at once: it may have been sent, and the next is
        // spaced from it.
        drop(pacer.reserve(&a, HOST, rate, now, far).unwrap());
        let next = take(&pacer, &a, HOST, rate, now, far).unwrap();
        assert_eq!(next - now, Duration::from_secs(1));
    }

    #[test]
    fn a_given_back_turn_past_the_latest_stays_for_a_call_with_more_time() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        let (a, far) = (tenant("a"), Some(now + Duration::from_secs(60)));
        take(&pacer, &a, HOST, rate, now, far).unwrap();
        let second = pacer.reserve(&a, HOST, rate, now, far).unwrap();
        let third = pacer.reserve(&a, HOST, rate, now, far).unwrap();
        drop(second);
        let soon = Some(now + Duration::from_millis(500));
        let refused = take(&pacer, &a, HOST, rate, now, soon);
        assert_eq!(
            refused,
            Err(NoTurn {
                wait: Duration::from_secs(1)
            })
        );
        let next = take(&pacer, &a, HOST, rate, now, far).unwrap();
        assert_eq!(next - now, Duration::from_secs(1));
        third.taken();
    }

    /// One request each from tenants `t0` up to the sweep threshold.
    fn fill(pacer: &Arc<Pacer>, rate: RequestRate, now: Instant, latest: Option<Instant>) {
        for i in 0..Pacer::SWEEP_ABOVE {
            let t = tenant(&format!("t{i}"));
            take(pacer, &t, HOST, rate, now, latest).unwrap();
        }
    }

    #[test]
    fn quiet_pairs_are_swept_so_the_table_stays_bounded() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(100, 1);
        fill(&pacer, rate, now, Some(now + Duration::from_secs(60)));
        assert_eq!(pacer.entries(), Pacer::SWEEP_ABOVE);
        // A second later every burst is full again; the next new pair
        // sweeps them out.
        let later = now + Duration::from_secs(1);
        assert_eq!(pacer.busy(later), 0);
        take(&pacer, &tenant("new"), HOST, rate, later, None).unwrap();
        assert_eq!(pacer.entries(), 1);
    }

    #[test]
    fn busy_pairs_are_kept_and_the_next_sweep_waits_for_twice_as_many() {
        let (pacer, now) = (Arc::new(Pacer::default()), Instant::now());
        let rate = RequestRate::new(1, 1);
        fill(&pacer, rate, now, None);
        // All still busy: the sweep keeps them, and each one's next request
        // still waits its turn.
        take(&pacer, &tenant("new"), HOST, rate, now, None).unwrap();
        assert_eq!(pacer.entries(), Pacer::SWEEP_ABOVE + 1);
        let again = take(&pacer, &tenant("t0"), HOST, rate, now, None).unwrap();
        assert_eq!(again - now, Duration::from_secs(1));
        let sweep_at = pacer.turns.lock().unwrap().sweep_at;
        assert_eq!(sweep_at, 2 * Pacer::SWEEP_ABOVE);
    }
}
