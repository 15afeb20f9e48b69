//! The worst case of a transform, worked out from its expression before anything is
//! evaluated (issue 15: a 2 KB configuration of nested `replace`s asked for gigabytes).
//!
//! Evaluation enforces [`MAX_OUTPUT_BYTES`](super::MAX_OUTPUT_BYTES) as it goes; this
//! bound lets validation refuse a transform that would pass it on ordinary inputs, so
//! the refusal comes when the configuration is loaded, not on the first identity.
//!
//! The bound mirrors the evaluator's charges function by function: for inputs within
//! the given [`InputSize`]s, the bytes an evaluation charges never exceed
//! [`Transform::worst_case_bytes`] (a property test in this module checks it).

use super::{Transform, MAX_COMBINATIONS};
use crate::value::{Scalar, Value};

/// The largest text form of a non-text scalar: an integer, boolean, date or datetime
/// (`-262143-01-01T00:00:00.000000000+00:00` is 36 bytes).
const NON_TEXT_BYTES: u128 = 40;

/// What an attribute read by a transform is assumed to hold, for its worst case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputSize {
    /// How many values it holds at most.
    pub values: u64,
    /// How many bytes one value's text form has at most.
    pub value_bytes: u64,
}

impl InputSize {
    /// The assumption validation makes for a single-valued attribute: one value of 1 KiB.
    pub(crate) const SINGLE: InputSize = InputSize {
        values: 1,
        value_bytes: 1024,
    };
    /// The assumption validation makes for a multi-valued attribute: 1,000 values of
    /// 256 bytes (group memberships, proxy addresses).
    pub(crate) const MULTI: InputSize = InputSize {
        values: 1000,
        value_bytes: 256,
    };
}

/// The worst case of one intermediate value.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    /// Bytes of all its values' text forms together.
    total: u128,
    /// Bytes of the text form of its largest value.
    largest: u128,
    /// How many values it holds.
    count: u128,
}

impl Size {
    fn of_value(v: &Value) -> Size {
        let lens: Vec<u128> = v.scalars().iter().map(scalar_bytes).collect();
        Size {
            total: lens.iter().sum(),
            largest: lens.iter().copied().max().unwrap_or(0),
            count: lens.len() as u128,
        }
    }

    fn one(bytes: u128) -> Size {
        Size {
            total: bytes,
            largest: bytes,
            count: 1,
        }
    }

    /// Either of two values (the branches of an `if`).
    fn either(self, other: Size) -> Size {
        Size {
            total: self.total.max(other.total),
            largest: self.largest.max(other.largest),
            count: self.count.max(other.count),
        }
    }

    /// Each value's text changed by `f`, which bounds the result from the input's bytes
    /// and is superadditive enough that `f(a) + f(b) <= f(a + b)`.
    fn per_value(self, f: impl Fn(u128) -> u128) -> Size {
        Size {
            total: f(self.total),
            largest: f(self.largest),
            count: self.count,
        }
    }
}

fn scalar_bytes(s: &Scalar) -> u128 {
    match s {
        Scalar::Text(t) => t.len() as u128,
        _ => NON_TEXT_BYTES,
    }
}

impl Transform {
    /// The most bytes of text one evaluation can produce (every intermediate result
    /// counted, as the evaluator charges them) when each attribute it reads holds at
    /// most what `input` says of it. Saturates instead of overflowing.
    pub(crate) fn worst_case_bytes(&self, input: &dyn Fn(&str) -> InputSize) -> u128 {
        let mut spent = 0u128;
        bound(self, input, &mut spent);
        spent
    }
}

/// The worst case of `t`'s result; adds what evaluating it charges to `spent`.
fn bound(t: &Transform, input: &dyn Fn(&str) -> InputSize, spent: &mut u128) -> Size {
    match t {
        Transform::Literal(v) => Size::of_value(v),
        Transform::Attr(name) => {
            let i = input(name);
            let largest = u128::from(i.value_bytes).max(NON_TEXT_BYTES);
            Size {
                total: largest.saturating_mul(u128::from(i.values)),
                largest,
                count: u128::from(i.values),
            }
        }
        // Case mapping can grow a text up to three times (in UTF-8 bytes).
        Transform::Lower(x) | Transform::Upper(x) => {
            let out = bound(x, input, spent).per_value(|b| b.saturating_mul(3));
            charge_to(spent, out.total);
            out
        }
        Transform::Trim(x) | Transform::Substring { value: x, .. } => bound(x, input, spent),
        Transform::Replace { value, from, to } => {
            let (from, to) = (from.len() as u128, to.len() as u128);
            let grows = to.saturating_sub(from);
            let out = bound(value, input, spent).per_value(|b| {
                // An empty `from` matches before every character and at the end.
                let hits = b.checked_div(from).unwrap_or_else(|| b.saturating_add(1));
                b.saturating_add(hits.saturating_mul(grows))
            });
            // An empty `from` adds one match per value, not per byte.
            let out = if from == 0 {
                Size {
                    total: out.total.saturating_add(out.count.saturating_mul(grows)),
                    ..out
                }
            } else {
                out
            };
            charge_to(spent, out.total);
            out
        }
        Transform::Concat(parts) => {
            let mut combinations = 1u128;
            let mut prefix = 0u128;
            let mut multi = false;
            for part in parts {
                let p = bound(part, input, spent);
                if p.count > 1 {
                    multi = true;
                }
                // The evaluator refuses past MAX_COMBINATIONS before making them.
                combinations = combinations
                    .saturating_mul(p.count.max(1))
                    .min(MAX_COMBINATIONS as u128);
                prefix = prefix.saturating_add(p.largest);
                charge_to(spent, combinations.saturating_mul(prefix));
            }
            let count = if multi { combinations } else { 1 };
            Size {
                total: count.saturating_mul(prefix),
                largest: prefix,
                count,
            }
        }
        Transform::Lookup { value, table, default } => {
            let v = bound(value, input, spent);
            let found = table.values().map(Size::of_value).fold(Size::default(), Size::either);
            let fallback = default.as_deref().map(|d| bound(d, input, spent)).unwrap_or_default();
            Size {
                total: v.count.saturating_mul(found.total).saturating_add(fallback.total),
                largest: found.largest.max(fallback.largest),
                count: v.count.saturating_mul(found.count).saturating_add(fallback.count),
            }
        }
        Transform::If {
            condition,
            then,
            otherwise,
        } => {
            bound(condition, input, spent);
            bound(then, input, spent).either(bound(otherwise, input, spent))
        }
        Transform::Eq(a, b)
        | Transform::Ne(a, b)
        | Transform::Lt(a, b)
        | Transform::Gt(a, b)
        | Transform::DaysBetween { from: a, to: b } => {
            bound(a, input, spent);
            bound(b, input, spent);
            Size::one(NON_TEXT_BYTES)
        }
        Transform::And(items) | Transform::Or(items) => {
            for item in items {
                bound(item, input, spent);
            }
            Size::one(NON_TEXT_BYTES)
        }
        Transform::Not(x) | Transform::IsEmpty(x) | Transform::In { value: x, .. } => {
            bound(x, input, spent);
            Size::one(NON_TEXT_BYTES)
        }
        Transform::Now | Transform::Today => Size::one(NON_TEXT_BYTES),
        Transform::AddDays { value, days } => {
            let v = bound(value, input, spent);
            bound(days, input, spent);
            Size {
                total: v.count.saturating_mul(NON_TEXT_BYTES),
                largest: NON_TEXT_BYTES,
                count: v.count,
            }
        }
        Transform::First(x) => {
            let v = bound(x, input, spent);
            Size::one(v.largest)
        }
        Transform::Join { value, separator } => {
            let v = bound(value, input, spent);
            let bytes = v.total.saturating_add(v.count.saturating_mul(separator.len() as u128));
            charge_to(spent, bytes);
            Size::one(bytes)
        }
        Transform::Split { value, separator } => {
            let v = bound(value, input, spent);
            // At most one piece per separator found, plus one per text.
            let pieces = v.total / (separator.len().max(1) as u128);
            Size {
                total: v.total,
                largest: v.largest,
                count: pieces.saturating_add(v.count),
            }
        }
    }
}

fn charge_to(spent: &mut u128, bytes: u128) {
    *spent = spent.saturating_add(bytes);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{json, Value as Json};

    use super::*;
    use crate::transform::MAX_OUTPUT_BYTES;

    fn single(name: &str) -> bool {
        name.starts_with('s')
    }

    fn assumed(name: &str) -> InputSize {
        if single(name) {
            InputSize::SINGLE
        } else {
            InputSize::MULTI
        }
    }

    fn estimate(j: &Json) -> u128 {
        Transform::from_json(j)
            .map(|t| t.worst_case_bytes(&assumed))
            .unwrap_or_else(|e| panic!("{j}: {e}"))
    }

    /// `levels` nested `replace`s of `a` by ten of them, the memory bomb of issue 15.
    fn bomb(levels: usize) -> Json {
        let mut j = json!({"attr": "s1"});
        for _ in 0..levels {
            j = json!({"replace": [j, "a", "aaaaaaaaaa"]});
        }
        j
    }

    #[test]
    fn nested_replaces_grow_by_their_ratio() {
        // One level: 1 KiB of `a`s becomes 10 KiB, charged once.
        assert_eq!(estimate(&bomb(1)), 10 * 1024);
        assert_eq!(estimate(&bomb(2)), 10 * 1024 + 100 * 1024);
        assert!(estimate(&bomb(4)) < MAX_OUTPUT_BYTES as u128);
        assert!(estimate(&bomb(5)) > MAX_OUTPUT_BYTES as u128);
        // Twelve levels saturate nothing and stay far past the budget.
        assert!(estimate(&bomb(12)) > 10u128.pow(14));
    }

    #[test]
    fn ordinary_transforms_stay_small() {
        for j in [
            json!({"lower": {"concat": [{"attr": "s1"}, ".", {"attr": "s2"}, "@example.com"]}}),
            json!({"concat": ["grp-", {"attr": "m1"}]}),
            json!({"join": [{"attr": "m1"}, ";"]}),
            json!({"lookup": {"value": {"attr": "s1"}, "table": {"a": "x"}, "default": {"attr": "s2"}}}),
            json!({"if": [{"lt": [{"attr": "s1"}, {"today": {}}]}, "inactive", "active"]}),
            json!({"concat": [{"attr": "m1"}, "-", {"attr": "m2"}]}),
        ] {
            assert!(estimate(&j) < 8 * 1024 * 1024, "{j}: {}", estimate(&j));
        }
    }

    #[test]
    fn concat_counts_every_prefix_and_combination() {
        // Two parts of 1 KiB: the first step charges 1 KiB, the second 2 KiB.
        assert_eq!(estimate(&json!({"concat": [{"attr": "s1"}, {"attr": "s2"}]})), 3 * 1024);
        // A multi value of 1,000 values times a literal pair: 2,000 texts.
        let j = json!({"concat": [{"attr": "m1"}, ["x", "y"]]});
        assert_eq!(estimate(&j), 1000 * 256 + 2000 * 257);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[aß ;Σ]{0,40}",
            (0usize..=1024).prop_map(|n| "a".repeat(n)),
            (0usize..=340).prop_map(|n| "ΐ".repeat(n)),
        ]
    }

    fn node() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            prop::sample::select(vec!["s1", "s2", "m1", "m2"]).prop_map(|a| json!({"attr": a})),
            "[a; ]{0,6}".prop_map(Json::from),
            prop::collection::vec("[ab]{1,3}", 0..4).prop_map(Json::from),
            Just(json!({"today": {}})),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|x| json!({"lower": x})),
                inner.clone().prop_map(|x| json!({"upper": x})),
                inner.clone().prop_map(|x| json!({"trim": x})),
                inner.clone().prop_map(|x| json!({"first": x})),
                (inner.clone(), "[aΣ;]{1,2}", "[aß;]{0,8}").prop_map(|(x, from, to)| json!({"replace": [x, from, to]})),
                prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"concat": v})),
                (inner.clone(), "[;a]{0,3}").prop_map(|(x, sep)| json!({"join": [x, sep]})),
                (inner.clone(), "[;a ]{1,2}").prop_map(|(x, sep)| json!({"split": [x, sep]})),
                (inner.clone(), inner.clone()).prop_map(|(x, d)| json!({"lookup": {
                    "value": x, "table": {"a": "aaaa", "b": ["x", "yy"]}, "default": d}})),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| json!({"if": [{"is_empty": c}, a, b]})),
                (inner.clone(), 0usize..5).prop_map(|(x, n)| json!({"substring": [x, n, 3]})),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 256 } else { 2048 }))]

        /// What an evaluation charges never exceeds the worst case, for inputs within
        /// the assumed sizes.
        #[test]
        fn evaluation_stays_within_the_worst_case(
            j in node(),
            s1 in text(),
            s2 in text(),
            m1 in prop::collection::vec("[aß;Σ]{0,128}", 0..30),
            m2 in prop::collection::vec(text().prop_map(|t| t.chars().take(64).collect::<String>()), 0..30),
        ) {
            let Ok(t) = Transform::from_json(&j) else { return Ok(()) };
            let multi = |v: Vec<String>| Value::multi(v.into_iter().map(|s| Scalar::Text(s.into())).collect(), true);
            let one = |s: String| if s.is_empty() { Value::Empty } else { Value::single(Scalar::Text(s.into())) };
            let source = BTreeMap::from([
                ("s1".to_owned(), one(s1)),
                ("s2".to_owned(), one(s2)),
                ("m1".to_owned(), multi(m1)),
                ("m2".to_owned(), multi(m2)),
            ]);
            let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
            let (_, charged) = t.eval_charged(&source, now);
            let worst = t.worst_case_bytes(&assumed);
            prop_assert!(charged as u128 <= worst, "{}: charged {} > worst case {}", j, charged, worst);
        }
    }
}
