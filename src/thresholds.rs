//! Change counters and thresholds (SPEC 2.5, 2.6): an import or outbound plan whose
//! counters exceed a limit is blocked and applies nothing until approved.

use serde::{Deserialize, Serialize};

/// The counters of a plan.
///
/// `inserted`, `updated`, `deleted` count accounts whose single-valued attributes
/// change (an insert or delete counts once); `link_inserted` / `link_deleted` count
/// values added to / removed from multi-valued attributes; `link_updated` counts
/// accounts, stored before and after, whose multi-valued attributes change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counts {
    /// Accounts inserted (or create ops).
    pub inserted: u64,
    /// Accounts whose single-valued attributes change (or accounts with `set` ops).
    pub updated: u64,
    /// Accounts deleted.
    pub deleted: u64,
    /// Values added to multi-valued attributes.
    pub link_inserted: u64,
    /// Accounts whose multi-valued attributes change.
    pub link_updated: u64,
    /// Values removed from multi-valued attributes.
    pub link_deleted: u64,
}

impl std::fmt::Display for Counts {
    /// `3 inserted, 1 updated, 0 deleted; multi-valued: 8 values added, 0 removed (0
    /// updated accounts)`: values of inserted and deleted accounts count among the added
    /// and removed ones, while only accounts that stay count as updated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} inserted, {} updated, {} deleted; multi-valued: {} values added, {} removed ({} updated accounts)",
            self.inserted, self.updated, self.deleted, self.link_inserted, self.link_deleted, self.link_updated
        )
    }
}

impl Counts {
    /// Whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// What was stored before a plan: the base of percentage limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Base {
    /// Accounts stored (base of the scalar counters and `link_updated`).
    pub accounts: u64,
    /// Values stored in multi-valued attributes (base of `link_inserted`, `link_deleted`).
    pub link_values: u64,
}

impl Base {
    /// A base of `accounts` accounts holding `link_values` multi-valued values.
    pub fn new(accounts: u64, link_values: u64) -> Base {
        Base { accounts, link_values }
    }
}

/// Per-system limits. Every field is optional; a count *above* its limit exceeds it.
/// A percentage is the count over what was stored before; with nothing stored, any
/// non-zero count exceeds a percentage limit (a first load is reviewed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "each field is named by the counter it limits")]
pub struct Thresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inserted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_updated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deleted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_inserted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_updated: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_deleted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_link_inserted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_link_updated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_link_deleted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_link_inserted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_link_updated: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_link_deleted: Option<f64>,
    /// Rows of an import rejected by prepare (SPEC 12.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rejected: Option<u64>,
    /// Rejected rows as a percentage of the snapshot's rows (SPEC 12.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pct_rejected: Option<f64>,
}

/// One exceeded limit, with the figures that exceeded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Exceeded {
    /// The threshold's name as configured, e.g. `max_pct_deleted`.
    pub threshold: String,
    /// The counter's value.
    pub count: u64,
    /// The configured limit (a count or a percentage).
    pub limit: f64,
    /// For percentage limits: the count as a percentage of `base`; `None` for counts and
    /// when nothing was stored (any change then exceeds a percentage limit).
    pub percent: Option<f64>,
    /// For percentage limits: what was stored before.
    pub base: Option<u64>,
}

impl std::fmt::Display for Exceeded {
    /// `max_pct_deleted: 45 is 45.0% of the 100 stored, over the limit of 40%`, or
    /// `max_deleted: 45, over the limit of 10`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.threshold.starts_with("max_pct") {
            return write!(
                f,
                "{}: {}, over the limit of {}",
                self.threshold, self.count, self.limit
            );
        }
        match (self.percent, self.base) {
            (Some(percent), Some(base)) => write!(
                f,
                "{}: {} is {percent:.1}% of the {base} stored, over the limit of {}%",
                self.threshold, self.count, self.limit
            ),
            _ => write!(
                f,
                "{}: {} with nothing stored before (any change is over a percentage limit of {}%)",
                self.threshold, self.count, self.limit
            ),
        }
    }
}

/// One counter's limits: (count name, count limit, percentage name, percentage limit,
/// counter value, percentage base).
type Limits<'a> = (&'a str, Option<u64>, &'a str, Option<f64>, u64, u64);

impl Thresholds {
    /// Each configured percentage limit with its name (for validation).
    pub(crate) fn percentages(&self) -> [(&'static str, Option<f64>); 7] {
        [
            ("max_pct_rejected", self.max_pct_rejected),
            ("max_pct_inserted", self.max_pct_inserted),
            ("max_pct_updated", self.max_pct_updated),
            ("max_pct_deleted", self.max_pct_deleted),
            ("max_pct_link_inserted", self.max_pct_link_inserted),
            ("max_pct_link_updated", self.max_pct_link_updated),
            ("max_pct_link_deleted", self.max_pct_link_deleted),
        ]
    }

    /// The rejected-row limits an import exceeds (SPEC 12.3): `rejected` rows rejected
    /// by prepare out of the snapshot's `rows`. A snapshot without rows rejects none.
    pub fn check_rejected(&self, rejected: u64, rows: u64) -> Vec<Exceeded> {
        let mut exceeded = Vec::new();
        if let Some(limit) = self.max_rejected.filter(|&limit| rejected > limit) {
            exceeded.push(Exceeded {
                threshold: "max_rejected".to_owned(),
                count: rejected,
                limit: limit as f64,
                percent: None,
                base: None,
            });
        }
        if let Some(limit) = self.max_pct_rejected {
            let percent = if rows == 0 {
                0.0
            } else {
                rejected as f64 * 100.0 / rows as f64
            };
            if percent > limit {
                exceeded.push(Exceeded {
                    threshold: "max_pct_rejected".to_owned(),
                    count: rejected,
                    limit,
                    percent: Some(percent),
                    base: Some(rows),
                });
            }
        }
        exceeded
    }

    /// Every limit that `counts` exceeds against `base`, in a fixed order.
    pub fn check(&self, counts: &Counts, base: Base) -> Vec<Exceeded> {
        let scalar_base = base.accounts;
        let rows: [Limits<'_>; 6] = [
            (
                "max_inserted",
                self.max_inserted,
                "max_pct_inserted",
                self.max_pct_inserted,
                counts.inserted,
                scalar_base,
            ),
            (
                "max_updated",
                self.max_updated,
                "max_pct_updated",
                self.max_pct_updated,
                counts.updated,
                scalar_base,
            ),
            (
                "max_deleted",
                self.max_deleted,
                "max_pct_deleted",
                self.max_pct_deleted,
                counts.deleted,
                scalar_base,
            ),
            (
                "max_link_inserted",
                self.max_link_inserted,
                "max_pct_link_inserted",
                self.max_pct_link_inserted,
                counts.link_inserted,
                base.link_values,
            ),
            (
                "max_link_updated",
                self.max_link_updated,
                "max_pct_link_updated",
                self.max_pct_link_updated,
                counts.link_updated,
                scalar_base,
            ),
            (
                "max_link_deleted",
                self.max_link_deleted,
                "max_pct_link_deleted",
                self.max_pct_link_deleted,
                counts.link_deleted,
                base.link_values,
            ),
        ];
        let mut exceeded = Vec::new();
        for (name, limit, pct_name, pct_limit, count, base) in rows {
            if let Some(limit) = limit {
                if count > limit {
                    exceeded.push(Exceeded {
                        threshold: name.to_owned(),
                        count,
                        limit: limit as f64,
                        percent: None,
                        base: None,
                    });
                }
            }
            if let Some(limit) = pct_limit {
                // With nothing stored a percentage is undefined: any change exceeds it.
                let (over, percent) = if base == 0 {
                    (count > 0, None)
                } else {
                    let percent = count as f64 * 100.0 / base as f64;
                    (percent > limit, Some(percent))
                };
                if over {
                    exceeded.push(Exceeded {
                        threshold: pct_name.to_owned(),
                        count,
                        limit,
                        percent,
                        base: Some(base),
                    });
                }
            }
        }
        exceeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &[Exceeded]) -> Vec<&str> {
        e.iter().map(|x| x.threshold.as_str()).collect()
    }

    fn counts(values: [u64; 6]) -> Counts {
        let [inserted, updated, deleted, link_inserted, link_updated, link_deleted] = values;
        Counts {
            inserted,
            updated,
            deleted,
            link_inserted,
            link_updated,
            link_deleted,
        }
    }

    #[test]
    fn rejected_rows_exceed_above_their_count_or_share_of_the_rows() {
        let limits = Thresholds {
            max_rejected: Some(2),
            max_pct_rejected: Some(50.0),
            ..Thresholds::default()
        };
        assert!(limits.check_rejected(2, 4).is_empty());
        assert_eq!(names(&limits.check_rejected(3, 100)), ["max_rejected"]);
        assert_eq!(names(&limits.check_rejected(2, 3)), ["max_pct_rejected"]);
        assert_eq!(limits.check_rejected(2, 3)[0].percent.map(f64::round), Some(67.0));
        assert_eq!(
            names(&limits.check_rejected(3, 4)),
            ["max_rejected", "max_pct_rejected"]
        );
        assert!(limits.check_rejected(0, 0).is_empty());
    }

    #[test]
    fn each_absolute_counter_exceeds_only_above_its_limit() {
        let t = Thresholds {
            max_inserted: Some(1),
            max_updated: Some(1),
            max_deleted: Some(1),
            max_link_inserted: Some(1),
            max_link_updated: Some(1),
            max_link_deleted: Some(1),
            ..Thresholds::default()
        };
        let base = Base::new(100, 100);
        assert!(
            t.check(&counts([1, 1, 1, 1, 1, 1]), base).is_empty(),
            "equal to the limit is allowed"
        );
        let all = [
            "max_inserted",
            "max_updated",
            "max_deleted",
            "max_link_inserted",
            "max_link_updated",
            "max_link_deleted",
        ];
        for (i, name) in all.iter().enumerate() {
            let mut v = [0; 6];
            v[i] = 2;
            assert_eq!(names(&t.check(&counts(v), base)), vec![*name]);
        }
    }

    #[test]
    fn each_percentage_uses_its_own_base() {
        let t = Thresholds {
            max_pct_inserted: Some(10.0),
            max_pct_updated: Some(10.0),
            max_pct_deleted: Some(10.0),
            max_pct_link_inserted: Some(10.0),
            max_pct_link_updated: Some(10.0),
            max_pct_link_deleted: Some(10.0),
            ..Thresholds::default()
        };
        // 10 accounts, 100 link values: 2 accounts is 20%, 2 link values is 2%.
        let base = Base::new(10, 100);
        assert_eq!(
            names(&t.check(&counts([2, 2, 2, 2, 2, 2]), base)),
            vec![
                "max_pct_inserted",
                "max_pct_updated",
                "max_pct_deleted",
                "max_pct_link_updated"
            ]
        );
        assert_eq!(
            names(&t.check(&counts([1, 1, 1, 11, 1, 11]), base)),
            vec!["max_pct_link_inserted", "max_pct_link_deleted"]
        );
    }

    #[test]
    fn with_nothing_stored_any_nonzero_count_exceeds_a_percentage() {
        let t = Thresholds {
            max_pct_inserted: Some(99.0),
            max_pct_link_inserted: Some(99.0),
            ..Thresholds::default()
        };
        let zero = Base::new(0, 0);
        assert!(t.check(&Counts::default(), zero).is_empty());
        assert_eq!(
            names(&t.check(&counts([1, 0, 0, 0, 0, 0]), zero)),
            vec!["max_pct_inserted"]
        );
        assert_eq!(
            names(&t.check(&counts([0, 0, 0, 1, 0, 0]), zero)),
            vec!["max_pct_link_inserted"]
        );
    }

    #[test]
    fn unset_limits_never_exceed() {
        assert!(Thresholds::default()
            .check(&counts([9, 9, 9, 9, 9, 9]), Base::new(1, 1))
            .is_empty());
    }
}
