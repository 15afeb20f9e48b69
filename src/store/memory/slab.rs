//! [`Slab`]: the memory store's records, packed into large pages.
//!
//! A million accounts and a million identities as one heap allocation each left the
//! allocator a heap of small live chunks among the chunks an import frees: a first load
//! written a part at a time spent more time in `malloc` than in its own work, and every
//! read after it allocated from a fragmented heap (glibc's `unlink_chunk` and
//! `malloc_consolidate` were a third of a whole-system outbound plan). Records are
//! therefore appended to pages of [`PAGE`] bytes and named by a [`Span`]; a replaced or
//! removed record's bytes are counted dead, and once more bytes are dead than live the
//! store copies its live records into fresh pages ([`Slab::should_compact`]), so the room
//! a slab takes stays within about twice its live bytes.

/// The size of a page: large enough to be its own mapping, small enough that a store
/// of a few records does not reserve much.
const PAGE: usize = 1 << 20;

/// Dead bytes below this never start a compaction (a small store is not worth copying).
#[cfg(not(test))]
const COMPACT_FLOOR: usize = 16 * PAGE;
/// None in unit tests, so that the store's tests compact as often as they can.
#[cfg(test)]
const COMPACT_FLOOR: usize = 1;

/// Where a record's bytes are in a [`Slab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    page: u32,
    start: u32,
    len: u32,
}

/// Records appended to large pages.
#[derive(Debug, Clone, Default)]
pub(super) struct Slab {
    pages: Vec<Vec<u8>>,
    live: usize,
    dead: usize,
}

impl Slab {
    /// Appends `bytes`; `None` when the slab cannot name more (over 4 GiB in one page
    /// count or a record over 4 GiB).
    pub(super) fn push(&mut self, bytes: &[u8]) -> Option<Span> {
        let len = u32::try_from(bytes.len()).ok()?;
        let fits = self
            .pages
            .last()
            .is_some_and(|page| page.capacity() - page.len() >= bytes.len());
        if !fits {
            self.pages.push(Vec::with_capacity(PAGE.max(bytes.len())));
        }
        let page_number = u32::try_from(self.pages.len() - 1).ok()?;
        let page = self.pages.last_mut()?;
        let start = u32::try_from(page.len()).ok()?;
        page.extend_from_slice(bytes);
        self.live += bytes.len();
        Some(Span {
            page: page_number,
            start,
            len,
        })
    }

    /// The bytes of `span` (empty for a span this slab did not hand out: the record
    /// then does not read back, which the store reports).
    pub(super) fn get(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        self.pages
            .get(span.page as usize)
            .and_then(|page| page.get(start..start + span.len as usize))
            .unwrap_or(&[])
    }

    /// Counts the bytes of a replaced or removed record as dead.
    pub(super) fn release(&mut self, span: Span) {
        let len = span.len as usize;
        self.live = self.live.saturating_sub(len);
        self.dead += len;
    }

    /// Whether more bytes are dead than live (and enough to be worth a copy).
    pub(super) fn should_compact(&self) -> bool {
        self.dead > self.live.max(COMPACT_FLOOR)
    }

    /// The bytes the slab holds for live records.
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// The bytes of records replaced or removed since the last compaction.
    #[cfg(test)]
    pub(super) fn dead(&self) -> usize {
        self.dead
    }

    /// The bytes of its pages (live, dead and room not used yet).
    #[cfg(test)]
    pub(super) fn reserved(&self) -> usize {
        self.pages.iter().map(Vec::capacity).sum()
    }

    /// Copies the records of `spans` (every live one) into fresh pages and points each
    /// span at its copy; the old pages, and the dead bytes in them, are dropped. Nothing
    /// changes if a copy cannot be named (it always can: the records fitted before).
    pub(super) fn compact<'a>(&mut self, spans: impl Iterator<Item = &'a mut Span>) {
        let mut fresh = Slab::default();
        let mut spans: Vec<&mut Span> = spans.collect();
        let Some(moved) = spans
            .iter()
            .map(|span| fresh.push(self.get(**span)))
            .collect::<Option<Vec<Span>>>()
        else {
            return;
        };
        for (span, new) in spans.iter_mut().zip(moved) {
            **span = new;
        }
        *self = fresh;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every span reads back its bytes through pushes, releases and a compaction,
        /// and a compaction leaves only the live bytes.
        #[test]
        fn spans_read_back_across_pages_and_a_compaction(
            records in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..200),
            big in 0usize..3,
        ) {
            let mut slab = Slab::default();
            let mut kept = Vec::new();
            // A few records larger than a page get pages of their own.
            for n in 0..big {
                let bytes = vec![n as u8; PAGE + n];
                let span = slab.push(&bytes);
                prop_assert!(span.is_some());
                kept.push((span.unwrap_or(Span { page: 0, start: 0, len: 0 }), bytes));
            }
            for (bytes, keep) in records {
                let Some(span) = slab.push(&bytes) else {
                    return Err(TestCaseError::fail("a push was refused"));
                };
                prop_assert_eq!(slab.get(span), bytes.as_slice());
                if keep {
                    kept.push((span, bytes));
                } else {
                    slab.release(span);
                }
            }
            for (span, bytes) in &kept {
                prop_assert_eq!(slab.get(*span), bytes.as_slice());
            }
            slab.compact(kept.iter_mut().map(|(span, _)| span));
            for (span, bytes) in &kept {
                prop_assert_eq!(slab.get(*span), bytes.as_slice());
            }
            prop_assert_eq!(slab.live(), kept.iter().map(|(_, b)| b.len()).sum::<usize>());
        }
    }

    #[test]
    fn a_foreign_span_reads_as_nothing_and_dead_bytes_start_a_compaction() {
        let mut slab = Slab::default();
        assert!(slab
            .get(Span {
                page: 3,
                start: 0,
                len: 4
            })
            .is_empty());
        let span = slab.push(&[1, 2, 3]).unwrap_or(Span {
            page: 9,
            start: 9,
            len: 9,
        });
        assert!(slab.get(Span { len: 9, ..span }).is_empty());
        assert!(!slab.should_compact());
        let filler = vec![0u8; 4096];
        let mut spans = Vec::new();
        while slab.reserved() <= 2 * PAGE {
            spans.extend(slab.push(&filler));
        }
        assert!(!slab.should_compact());
        for span in spans {
            slab.release(span);
        }
        assert!(slab.should_compact());
        assert_eq!(slab.live(), 3);
    }
}
