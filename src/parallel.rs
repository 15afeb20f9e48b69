//! Data-parallel pure work: [`map`] splits a slice over the machine's cores when the
//! `parallel` feature is on (the default) and the slice is large, and runs in the
//! calling thread otherwise. The result is the same either way — the function sees
//! each item once, in its own thread, and results come back in the items' order — so
//! a run is as deterministic with threads as without (tests compare both).

/// Below this many items, threads cost more than they save.
const MIN_PARALLEL: usize = 32 * 1024;

/// `f` of every item, in item order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_with(items, threads(items.len()), f)
}

/// `f` of every position `0..len`, in order, on several threads for a large `len` (as
/// [`map`], without a list of the positions).
pub(crate) fn map_range<R: Send>(len: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    map_range_with(len, threads(len), f)
}

fn map_range_with<R: Send>(len: usize, threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let chunk = len.div_ceil(threads.max(1)).max(1);
    let parts: Vec<std::ops::Range<usize>> = (0..len)
        .step_by(chunk)
        .map(|start| start..(start + chunk).min(len))
        .collect();
    let f = &f;
    let mut out = Vec::with_capacity(len);
    for part in map_with(&parts, threads, |part| part.clone().map(f).collect::<Vec<R>>()) {
        out.extend(part);
    }
    out
}

/// How many threads `map` uses for `len` items.
fn threads(len: usize) -> usize {
    #[cfg(test)]
    if let Some(threads) = FORCED.get() {
        return threads;
    }
    if cfg!(feature = "parallel") && len >= MIN_PARALLEL {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    } else {
        1
    }
}

#[cfg(test)]
thread_local! {
    /// The thread count `map` uses in this test thread, whatever the input's size.
    static FORCED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with `map` using `threads` threads for any input (tests compare runs).
#[cfg(test)]
pub(crate) fn with_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    FORCED.set(Some(threads));
    let out = f();
    FORCED.set(None);
    out
}

/// `f` of every item, in item order, computed by `threads` threads.
fn map_with<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Vec<R>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        // A panic in `f` is a bug; it is passed on as it would be without threads.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part);
    }
    out
}

/// `f` of every item into `out`, in item order: `out` is cleared and refilled, so one
/// buffer serves a whole visit. A buffer freed and allocated again for each chunk of a
/// large visit made the allocator merge its free lists every time (glibc's
/// `malloc_consolidate`: a fifth of a whole-system outbound plan on a 1M store).
pub(crate) fn map_into<T: Sync, R: Send>(items: &[T], out: &mut Vec<Option<R>>, f: impl Fn(&T) -> R + Sync) {
    out.clear();
    out.resize_with(items.len(), || None);
    let threads = threads(items.len());
    if threads <= 1 || items.len() < 2 {
        for (slot, item) in out.iter_mut().zip(items) {
            *slot = Some(f(item));
        }
        return;
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .zip(out.chunks_mut(chunk))
            .map(|(part, slots)| {
                scope.spawn(move || {
                    for (slot, item) in slots.iter_mut().zip(part) {
                        *slot = Some(f(item));
                    }
                })
            })
            .collect();
        // A panic in `f` is a bug; it is passed on as it would be without threads.
        for handle in handles {
            handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
}

/// `consume(produce(item))` for every item, in item order, with `produce` of the next
/// item running in a second thread while `consume` takes the one before it, when `len`
/// (the work's size) is large enough for [`map`] to use threads. `produce` carries
/// `state` from item to item (it runs for one item at a time); `consume` runs in the
/// calling thread, and its first error stops the work (the item being produced is
/// finished and dropped). The result is the one of a run in one thread.
pub(crate) fn pipeline<I: Send, P: Send, S: Send, E>(
    len: usize,
    items: impl Iterator<Item = I>,
    mut state: S,
    produce: impl Fn(I, &mut S) -> P + Sync,
    mut consume: impl FnMut(P) -> Result<(), E>,
) -> Result<(), E> {
    let mut items = items;
    if threads(len) <= 1 {
        for item in items {
            consume(produce(item, &mut state))?;
        }
        return Ok(());
    }
    let Some(first) = items.next() else {
        return Ok(());
    };
    let produce = &produce;
    let mut product = produce(first, &mut state);
    std::thread::scope(|scope| loop {
        let Some(item) = items.next() else {
            return consume(product);
        };
        let next = scope.spawn(move || {
            let mut state = state;
            let product = produce(item, &mut state);
            (product, state)
        });
        let consumed = consume(product);
        // A panic in `produce` is a bug; it is passed on as it would be without threads.
        let (produced, carried) = next.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        consumed?;
        product = produced;
        state = carried;
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any number of threads gives what one thread gives, in order.
        #[test]
        fn threads_give_the_sequential_result(items in proptest::collection::vec(any::<u32>(), 0..500), threads in 1usize..9) {
            let f = |x: &u32| u64::from(*x).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(*x >> 3);
            prop_assert_eq!(map_with(&items, threads, f), items.iter().map(f).collect::<Vec<_>>());
        }

        /// So does a map over positions.
        #[test]
        fn threads_over_positions_give_the_sequential_result(len in 0usize..500, threads in 1usize..9) {
            let f = |x: usize| (x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            prop_assert_eq!(map_range_with(len, threads, f), (0..len).map(f).collect::<Vec<_>>());
        }
    }

    proptest! {
        /// A pipeline consumes what one thread would, in order, carrying the state, and
        /// stops at the first error.
        #[test]
        fn a_pipeline_gives_the_sequential_result(items in proptest::collection::vec(any::<u16>(), 0..60), threads in 1usize..3, fail_at in proptest::option::of(0usize..60)) {
            let run = || {
                let mut seen = Vec::new();
                let result = pipeline(
                    items.len(),
                    items.iter().enumerate(),
                    0u64,
                    |(index, item), total: &mut u64| {
                        *total += u64::from(*item);
                        (index, *total)
                    },
                    |(index, total)| {
                        if Some(index) == fail_at {
                            return Err(index);
                        }
                        seen.push(total);
                        Ok(())
                    },
                );
                (result, seen)
            };
            let (result, seen) = with_threads(threads, run);
            let mut sums = Vec::new();
            let mut total = 0u64;
            for item in &items {
                total += u64::from(*item);
                sums.push(total);
            }
            let stop = fail_at.filter(|&at| at < items.len());
            prop_assert_eq!(result, stop.map_or(Ok(()), Err));
            sums.truncate(stop.unwrap_or(items.len()));
            prop_assert_eq!(seen, sums);
        }
    }

    #[test]
    fn large_inputs_use_the_cores_and_small_ones_do_not() {
        assert_eq!(threads(10), 1);
        let expected = if cfg!(feature = "parallel") {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        } else {
            1
        };
        assert_eq!(threads(MIN_PARALLEL), expected);
    }
}
