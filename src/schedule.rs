//! When time-based processing next changes something (SPEC 13): the exact next whole
//! second at which scheduled processing would change an identity, found by bisection
//! over time with a proof that nothing changes on the intervals it skips.
//!
//! The proof is an interval evaluation of the time-dependent transforms (computed
//! attributes and scopes): over `[a, b)`, `now` is a range of instants and `today` a range
//! of dates; `add_days`, `days_between` and the comparisons carry ranges (all are
//! monotone), and `if` / `and` / `or` / `not` / `is_empty` propagate what is decided. A
//! transform proved constant over an interval needs no evaluation inside it; one that
//! cannot be proved constant is split in two, so the search costs a few evaluations per
//! change point, not one per second. Anything the interval evaluation does not decide is
//! only split further, never assumed constant, so the result is exact; a per-identity
//! budget keeps pathological transforms bounded (the identity is then reported due at
//! the start of the interval left undecided: early, never late).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::config::Config;
use crate::model::Identity;
use crate::processing::{computed_order, recompute_access, recompute_attributes, recompute_scope, ProcessReport};
use crate::transform::Transform;
use crate::value::{Scalar, Value, ValueType};

/// How many undecided intervals one identity's search may split.
const BUDGET: u32 = 4096;

/// What a transform gives over an interval of time.
#[derive(Debug, Clone, PartialEq)]
enum Span {
    /// The same result everywhere in the interval (`Err`: the same evaluation error).
    Const(Result<Value, ()>),
    /// A date between the two (inclusive).
    Dates(NaiveDate, NaiveDate),
    /// An instant between the two (inclusive).
    Times(DateTime<Utc>, DateTime<Utc>),
    /// An integer between the two (inclusive).
    Ints(i64, i64),
    /// The clock shifted by whole days: `now` + `days` (an instant) or `today` + `days`
    /// (a date). Two clocks compare the same way everywhere in an interval.
    Clock { now: bool, days: i64 },
    /// `sign` x (the day number of the clock's date) + `base`: what `days_between` gives
    /// between the clock and a fixed date.
    DayCount { sign: i64, base: i64 },
    /// `sign` x the whole 24-hour days from `anchor` to the clock instant, truncated
    /// towards zero: what `days_between` gives between `now` (shifted by whole days,
    /// folded into the anchor) and a fixed instant. A step function in the anchor's
    /// phase of the day.
    Elapsed { sign: i64, anchor: DateTime<Utc> },
    /// Not decided.
    Unknown,
}

fn day_number(d: NaiveDate) -> i64 {
    i64::from(chrono::Datelike::num_days_from_ce(&d))
}

fn boolean(b: bool) -> Span {
    Span::Const(Ok(Value::Single(Scalar::Boolean(b))))
}

/// A condition's truth, as the evaluator reads it (empty is false).
fn truth(span: &Span) -> Option<Result<bool, ()>> {
    match span {
        Span::Const(Ok(Value::Empty)) => Some(Ok(false)),
        Span::Const(Ok(Value::Single(Scalar::Boolean(b)))) => Some(Ok(*b)),
        Span::Const(_) => Some(Err(())),
        _ => None,
    }
}

/// How two spans compare over an interval.
enum Ranges {
    /// Both comparable: (low, high) of each as numbers.
    Known((i64, i64), (i64, i64)),
    /// Never comparable anywhere in the interval (a boolean against a date, say).
    Incomparable,
    /// Not decided.
    Unknown,
}

/// Two spans as comparable ranges of numbers: days for dates (a datetime compared with
/// a date is compared by its date, as the evaluator does), microseconds for instants.
fn compared(x: &Span, y: &Span) -> Ranges {
    if matches!(x, Span::Unknown | Span::Const(Err(()))) || matches!(y, Span::Unknown | Span::Const(Err(()))) {
        return Ranges::Unknown;
    }
    match ranges(x, y) {
        Some((a, b)) => Ranges::Known(a, b),
        None => Ranges::Incomparable,
    }
}

fn ranges(x: &Span, y: &Span) -> Option<((i64, i64), (i64, i64))> {
    fn date_key(d: NaiveDate) -> i64 {
        i64::from(chrono::Datelike::num_days_from_ce(&d))
    }
    fn time_key(t: DateTime<Utc>) -> i64 {
        t.timestamp_micros()
    }
    /// A constant single value as a range of the other side's kind.
    fn point(value: &Value, like: &Span) -> Option<Span> {
        let Value::Single(s) = value else { return None };
        let parsed = match (s, like) {
            (Scalar::Text(t), Span::Dates(..)) => Scalar::parse(t, ValueType::Date)?,
            (Scalar::Text(t), Span::Times(..)) => Scalar::parse(t, ValueType::Datetime)?,
            (Scalar::Text(t), Span::Ints(..)) => Scalar::parse(t, ValueType::Integer)?,
            (other, _) => other.clone(),
        };
        Some(match parsed {
            Scalar::Date(d) => Span::Dates(d, d),
            Scalar::Datetime(t) => Span::Times(t, t),
            Scalar::Integer(n) => Span::Ints(n, n),
            _ => return None,
        })
    }
    let x = match x {
        Span::Const(Ok(v)) => point(v, y)?,
        other => other.clone(),
    };
    let y = match y {
        Span::Const(Ok(v)) => point(v, &x)?,
        other => other.clone(),
    };
    match (x, y) {
        (Span::Ints(a, b), Span::Ints(c, d)) => Some(((a, b), (c, d))),
        (Span::Times(a, b), Span::Times(c, d)) => Some(((time_key(a), time_key(b)), (time_key(c), time_key(d)))),
        (Span::Dates(a, b), Span::Dates(c, d)) => Some(((date_key(a), date_key(b)), (date_key(c), date_key(d)))),
        (Span::Dates(a, b), Span::Times(c, d)) => Some((
            (date_key(a), date_key(b)),
            (date_key(c.date_naive()), date_key(d.date_naive())),
        )),
        (Span::Times(a, b), Span::Dates(c, d)) => Some((
            (date_key(a.date_naive()), date_key(b.date_naive())),
            (date_key(c), date_key(d)),
        )),
        _ => None,
    }
}

/// How two clocks (or two day counts of the same sign) order: the same everywhere in an
/// interval. `None` when they are not both of that form.
fn clock_order(x: &Span, y: &Span) -> Option<Ordering> {
    match (x, y) {
        // Instants `now + k` order by `k`; a date against a clock instant compares by
        // date, and the shifts are whole days, so the order is that of the shifts too.
        (Span::Clock { days: a, .. }, Span::Clock { days: b, .. }) => Some(a.cmp(b)),
        (Span::DayCount { sign: s1, base: a }, Span::DayCount { sign: s2, base: b }) if s1 == s2 => Some(a.cmp(b)),
        _ => None,
    }
}

/// `days_between` with the clock on one side or both, where it is exact: two clocks
/// (whole days apart), or the clock's date against a fixed date (a day count).
fn clock_days_between(x: &Span, y: &Span) -> Option<Span> {
    let date_of = |s: &Span| match s {
        Span::Const(Ok(Value::Single(Scalar::Date(d)))) => Some((*d, false)),
        Span::Const(Ok(Value::Single(Scalar::Datetime(t)))) => Some((t.date_naive(), true)),
        _ => None,
    };
    let int = |n: i64| Span::Const(Ok(Value::Single(Scalar::Integer(n))));
    match (x, y) {
        (Span::Clock { days: a, .. }, Span::Clock { days: b, .. }) => Some(int(b - a)),
        // An instant against an instant counts the duration, not the dates: not exact.
        // An instant against an instant counts the duration: days from `now + k` to `T`
        // are the days from `T - k` to `now`, negated.
        (Span::Clock { now: true, days }, other) if instant_of(other).is_some() => {
            elapsed(-1, instant_of(other)?, *days)
        }
        (other, Span::Clock { now: true, days }) if instant_of(other).is_some() => {
            elapsed(1, instant_of(other)?, *days)
        }
        (Span::Clock { days, .. }, other) => {
            let (d, _) = date_of(other)?;
            Some(Span::DayCount {
                sign: -1,
                base: day_number(d) - days,
            })
        }
        (other, Span::Clock { days, .. }) => {
            let (d, _) = date_of(other)?;
            Some(Span::DayCount {
                sign: 1,
                base: days - day_number(d),
            })
        }
        _ => None,
    }
}

/// A constant single instant.
fn instant_of(span: &Span) -> Option<DateTime<Utc>> {
    match span {
        Span::Const(Ok(Value::Single(Scalar::Datetime(t)))) => Some(*t),
        _ => None,
    }
}

/// `sign` x the days between the instant `instant - shift days` and the clock.
fn elapsed(sign: i64, instant: DateTime<Utc>, shift: i64) -> Option<Span> {
    let anchor = instant.checked_sub_signed(TimeDelta::try_days(shift)?)?;
    Some(Span::Elapsed { sign, anchor })
}

/// The whole second at or before `t`.
fn floor_second(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0)
}

/// The whole second at or after `t`.
fn ceil_second(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let floor = floor_second(t)?;
    if floor == t {
        Some(floor)
    } else {
        floor.checked_add_signed(TimeDelta::seconds(1))
    }
}

/// A day-stepping count (`DayCount`, `Elapsed`) at instant `t`, and the first whole
/// second after `t` at which it steps again, valid while `t` stays on one side of an
/// `Elapsed` anchor. On each side, the steps are one day apart.
fn count_at(span: &Span, t: DateTime<Utc>) -> Option<(i64, DateTime<Utc>)> {
    let day = TimeDelta::days(1);
    match *span {
        Span::DayCount { sign, base } => {
            let date = t.date_naive();
            let next = date.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc();
            Some((sign.checked_mul(day_number(date))?.checked_add(base)?, next))
        }
        Span::Elapsed { sign, anchor } => {
            // The clock is read at whole seconds: past the anchor a count steps at the
            // first whole second at or after `anchor + k days`, before it at the first
            // whole second after `anchor - k days`.
            let e = t.signed_duration_since(anchor).num_days();
            let next = if t >= anchor {
                // `e` days reached at `anchor + e days`; the next at one day more.
                ceil_second(anchor.checked_add_signed(TimeDelta::try_days(e.checked_add(1)?)?)?)?
            } else if e < 0 {
                // `-k` until `anchor - k days`, one more at the next whole second.
                floor_second(anchor.checked_add_signed(TimeDelta::try_days(e)?)?)?
                    .checked_add_signed(TimeDelta::seconds(1))?
            } else {
                // Zero from a day before the anchor until a day after it.
                ceil_second(anchor.checked_add_signed(day)?)?
            };
            Some((sign.checked_mul(e)?, next))
        }
        _ => None,
    }
}

/// Whether an `Elapsed` anchor falls inside `(from, last]`, where its steps stop being
/// one day apart.
fn crosses_anchor(span: &Span, from: DateTime<Utc>, last: DateTime<Utc>) -> bool {
    matches!(*span, Span::Elapsed { anchor, .. } if from < anchor && anchor <= last)
}

/// Dates or instants of a span, for `days_between`.
fn points(span: &Span) -> Option<Span> {
    match span {
        Span::Const(Ok(Value::Single(Scalar::Date(d)))) => Some(Span::Dates(*d, *d)),
        Span::Const(Ok(Value::Single(Scalar::Datetime(t)))) => Some(Span::Times(*t, *t)),
        Span::Dates(..) | Span::Times(..) => Some(span.clone()),
        _ => None,
    }
}

fn date_range(span: &Span) -> (NaiveDate, NaiveDate) {
    match span {
        Span::Dates(a, b) => (*a, *b),
        Span::Times(a, b) => (a.date_naive(), b.date_naive()),
        _ => (NaiveDate::MIN, NaiveDate::MAX),
    }
}

/// The interval evaluation of one transform over `[from, last]` (whole seconds).
struct Interval<'a> {
    source: &'a BTreeMap<String, Value>,
    from: DateTime<Utc>,
    last: DateTime<Utc>,
}

impl Interval<'_> {
    /// A clock or day count as the range it covers over the interval.
    fn widen(&self, span: Span) -> Span {
        let shift = |days: i64| TimeDelta::try_days(days);
        match span {
            Span::Clock { now: false, days } => {
                let (a, b) = (self.from.date_naive(), self.last.date_naive());
                match shift(days).and_then(|d| Some((a.checked_add_signed(d)?, b.checked_add_signed(d)?))) {
                    Some((a, b)) => Span::Dates(a, b),
                    None => Span::Unknown,
                }
            }
            Span::Clock { now: true, days } => {
                match shift(days)
                    .and_then(|d| Some((self.from.checked_add_signed(d)?, self.last.checked_add_signed(d)?)))
                {
                    Some((a, b)) => Span::Times(a, b),
                    None => Span::Unknown,
                }
            }
            Span::DayCount { sign, base } => {
                let at = |d: NaiveDate| sign.saturating_mul(day_number(d)).saturating_add(base);
                let (a, b) = (at(self.from.date_naive()), at(self.last.date_naive()));
                Span::Ints(a.min(b), a.max(b))
            }
            // Monotone in the clock: its ends bound it.
            Span::Elapsed { sign, anchor } => {
                let at = |t: DateTime<Utc>| sign.saturating_mul(t.signed_duration_since(anchor).num_days());
                let (a, b) = (at(self.from), at(self.last));
                Span::Ints(a.min(b), a.max(b))
            }
            other => other,
        }
    }

    /// The range of `x - y` over the interval for two day-stepping counts of the same
    /// sign. Each steps once a day in its own phase, so the steps alternate (or
    /// coincide) and the difference only moves between its value at the start and one
    /// step away from it, however long the interval: a comparison of the two is decided
    /// for the whole interval or flips within a day.
    fn count_difference(&self, x: &Span, y: &Span) -> Option<(i64, i64)> {
        let sign = |s: &Span| match *s {
            Span::DayCount { sign, .. } | Span::Elapsed { sign, .. } => Some(sign),
            _ => None,
        };
        let (sx, sy) = (sign(x)?, sign(y)?);
        if sx != sy || crosses_anchor(x, self.from, self.last) || crosses_anchor(y, self.from, self.last) {
            return None;
        }
        let ((vx, nx), (vy, ny)) = (count_at(x, self.from)?, count_at(y, self.from)?);
        let d0 = vx.checked_sub(vy)?;
        let moved = match nx.cmp(&ny) {
            _ if nx > self.last && ny > self.last => d0,
            Ordering::Equal => d0,
            // `x` steps first: the difference moves by its sign, then back.
            Ordering::Less => d0.checked_add(sx)?,
            Ordering::Greater => d0.checked_sub(sx)?,
        };
        Some((d0.min(moved), d0.max(moved)))
    }

    fn span(&self, t: &Transform) -> Span {
        if !t.uses_now() {
            // Attribute values are constant over the interval (computed ones are only
            // read once proved constant), so a transform without `now` / `today` is too.
            return Span::Const(t.eval(self.source, self.from).map_err(|_| ()));
        }
        match t {
            Transform::Now => Span::Clock { now: true, days: 0 },
            Transform::Today => Span::Clock { now: false, days: 0 },
            Transform::AddDays { value, days } => {
                let k = match self.span(days) {
                    Span::Const(Ok(Value::Single(Scalar::Integer(k)))) => k,
                    Span::Const(Ok(Value::Empty)) => return Span::Const(Ok(Value::Empty)),
                    _ => return Span::Unknown,
                };
                let Some(delta) = TimeDelta::try_days(k) else {
                    return Span::Unknown;
                };
                match self.span(value) {
                    Span::Clock { now, days } => match days.checked_add(k) {
                        Some(days) => Span::Clock { now, days },
                        None => Span::Unknown,
                    },
                    Span::Dates(a, b) => match (a.checked_add_signed(delta), b.checked_add_signed(delta)) {
                        (Some(a), Some(b)) => Span::Dates(a, b),
                        _ => Span::Unknown,
                    },
                    Span::Times(a, b) => match (a.checked_add_signed(delta), b.checked_add_signed(delta)) {
                        (Some(a), Some(b)) => Span::Times(a, b),
                        _ => Span::Unknown,
                    },
                    Span::Const(Ok(Value::Empty)) => Span::Const(Ok(Value::Empty)),
                    _ => Span::Unknown,
                }
            }
            Transform::DaysBetween { from, to } => {
                let (x, y) = (self.span(from), self.span(to));
                if matches!(x, Span::Const(Ok(Value::Empty))) || matches!(y, Span::Const(Ok(Value::Empty))) {
                    return Span::Const(Ok(Value::Empty));
                }
                if let Some(exact) = clock_days_between(&x, &y) {
                    return exact;
                }
                let (x, y) = (self.widen(x), self.widen(y));
                let (Some(x), Some(y)) = (points(&x), points(&y)) else {
                    return Span::Unknown;
                };
                match (&x, &y) {
                    // Whole days of the duration, truncated: monotone in the duration.
                    (Span::Times(a, b), Span::Times(c, d)) => Span::Ints(
                        c.signed_duration_since(*b).num_days(),
                        d.signed_duration_since(*a).num_days(),
                    ),
                    _ => {
                        let ((a, b), (c, d)) = (date_range(&x), date_range(&y));
                        Span::Ints(
                            c.signed_duration_since(b).num_days(),
                            d.signed_duration_since(a).num_days(),
                        )
                    }
                }
            }
            Transform::Lt(a, b) | Transform::Gt(a, b) => {
                let (x, y) = (self.span(a), self.span(b));
                if matches!(x, Span::Const(Ok(Value::Empty))) || matches!(y, Span::Const(Ok(Value::Empty))) {
                    return boolean(false);
                }
                if let Some(order) = clock_order(&x, &y) {
                    let want = if matches!(t, Transform::Lt(..)) {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                    return boolean(order == want);
                }
                if let Some((lo, hi)) = self.count_difference(&x, &y) {
                    let less = matches!(t, Transform::Lt(..));
                    let (always, never) = if less { (hi < 0, lo >= 0) } else { (lo > 0, hi <= 0) };
                    if always || never {
                        return boolean(always);
                    }
                }
                let (x, y) = (self.widen(x), self.widen(y));
                let ((xl, xh), (yl, yh)) = match compared(&x, &y) {
                    Ranges::Known(a, b) => (a, b),
                    // The evaluator refuses to order values it cannot compare.
                    Ranges::Incomparable => return Span::Const(Err(())),
                    Ranges::Unknown => return Span::Unknown,
                };
                let less = matches!(t, Transform::Lt(..));
                let (always, never) = if less { (xh < yl, xl >= yh) } else { (xl > yh, xh <= yl) };
                if always {
                    boolean(true)
                } else if never {
                    boolean(false)
                } else {
                    Span::Unknown
                }
            }
            Transform::Eq(a, b) | Transform::Ne(a, b) => {
                let (x, y) = (self.span(a), self.span(b));
                if let Some(order) = clock_order(&x, &y) {
                    return boolean((order == Ordering::Equal) == matches!(t, Transform::Eq(..)));
                }
                if let Some((lo, hi)) = self.count_difference(&x, &y) {
                    if lo == 0 && hi == 0 || lo > 0 || hi < 0 {
                        return boolean((lo == 0 && hi == 0) == matches!(t, Transform::Eq(..)));
                    }
                }
                let (x, y) = (self.widen(x), self.widen(y));
                let ((xl, xh), (yl, yh)) = match compared(&x, &y) {
                    Ranges::Known(a, b) => (a, b),
                    // Values that cannot compare are never equal.
                    Ranges::Incomparable => return boolean(matches!(t, Transform::Ne(..))),
                    Ranges::Unknown => return Span::Unknown,
                };
                let equal = if xl == xh && yl == yh && xl == yl {
                    true
                } else if xh < yl || yh < xl {
                    false
                } else {
                    return Span::Unknown;
                };
                boolean(equal == matches!(t, Transform::Eq(..)))
            }
            Transform::If {
                condition,
                then,
                otherwise,
            } => match truth(&self.span(condition)) {
                Some(Ok(true)) => self.span(then),
                Some(Ok(false)) => self.span(otherwise),
                Some(Err(())) => Span::Const(Err(())),
                None => {
                    let (a, b) = (self.span(then), self.span(otherwise));
                    if matches!(a, Span::Const(_)) && a == b {
                        a
                    } else {
                        Span::Unknown
                    }
                }
            },
            Transform::And(items) | Transform::Or(items) => {
                // Left to right with the evaluator's short circuit.
                let stop = matches!(t, Transform::Or(_));
                for item in items {
                    match truth(&self.span(item)) {
                        Some(Ok(b)) if b == stop => return boolean(stop),
                        Some(Ok(_)) => {}
                        Some(Err(())) => return Span::Const(Err(())),
                        None => return Span::Unknown,
                    }
                }
                boolean(!stop)
            }
            Transform::Not(x) => match truth(&self.span(x)) {
                Some(Ok(b)) => boolean(!b),
                Some(Err(())) => Span::Const(Err(())),
                None => Span::Unknown,
            },
            Transform::IsEmpty(x) => match self.span(x) {
                Span::Dates(..)
                | Span::Times(..)
                | Span::Ints(..)
                | Span::Clock { .. }
                | Span::DayCount { .. }
                | Span::Elapsed { .. } => boolean(false),
                Span::Const(Ok(v)) => boolean(v.is_empty()),
                Span::Const(Err(())) => Span::Const(Err(())),
                Span::Unknown => Span::Unknown,
            },
            _ => Span::Unknown,
        }
    }
}

/// Whether scheduled processing of `identity` gives the same result everywhere in
/// `[from, to)`: every computed attribute and every scope is proved constant there.
fn constant_on(config: &Config, identity: &Identity, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    let last = to - TimeDelta::seconds(1);
    let mut source: BTreeMap<String, Value> = config
        .identity
        .attributes
        .keys()
        .map(|name| (name.to_string(), identity.value(name).clone()))
        .collect();
    for (name, transform) in computed_order(config) {
        let span = Interval {
            source: &source,
            from,
            last,
        }
        .span(transform);
        let Span::Const(value) = span else { return false };
        if let (Ok(value), Some(decl)) = (value, config.identity.attributes.get(name)) {
            // The value processing would store (errors keep the stored one).
            if let Ok(converted) = value.convert(decl.value_type, decl.multi, decl.case_exact) {
                source.insert(name.to_owned(), converted);
            }
        }
    }
    config.systems.values().filter_map(|s| s.scope.as_ref()).all(|scope| {
        matches!(
            Interval {
                source: &source,
                from,
                last,
            }
            .span(scope),
            Span::Const(_)
        )
    })
}

/// Whether scheduled processing at `at` would change the stored `identity` (a computed
/// attribute; the role grants of an identity whose attributes changed; scope
/// membership), with the evaluation errors it meets.
pub(crate) fn changes_at(config: &Config, identity: &Identity, at: DateTime<Utc>, report: &mut ProcessReport) -> bool {
    let mut copy = identity.clone();
    let mut changed = recompute_attributes(config, &mut copy, at, report);
    if changed {
        recompute_access(config, &mut copy, at, report);
    }
    changed |= recompute_scope(config, &mut copy, at, report);
    changed || copy.access != identity.access
}

/// The first whole second in `[start, until)` at which scheduled processing would
/// change `identity`, if any; the evaluation errors at `start` go to `report`.
pub(crate) fn first_change(
    config: &Config,
    identity: &Identity,
    start: DateTime<Utc>,
    until: DateTime<Utc>,
    report: &mut ProcessReport,
) -> Option<DateTime<Utc>> {
    let changes_now = changes_at(config, identity, start, report);
    if start >= until {
        return None;
    }
    if changes_now {
        return Some(start);
    }
    let mut budget = BUDGET;
    search(config, identity, start, until, &mut budget)
}

/// The first change in `(from, to)`, knowing there is none at `from`.
fn search(
    config: &Config,
    identity: &Identity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    budget: &mut u32,
) -> Option<DateTime<Utc>> {
    let width = (to - from).num_seconds();
    if width <= 1 || constant_on(config, identity, from, to) {
        return None;
    }
    if *budget == 0 {
        // Undecided and out of budget: due at once (early, never late).
        return Some(from + TimeDelta::seconds(1));
    }
    *budget -= 1;
    let middle = from + TimeDelta::seconds(width / 2);
    if let Some(found) = search(config, identity, from, middle, budget) {
        return Some(found);
    }
    let mut scratch = ProcessReport::default();
    if changes_at(config, identity, middle, &mut scratch) {
        return Some(middle);
    }
    search(config, identity, middle, to, budget)
}
