//! One page of a sorted list, without sorting the whole list.
//!
//! A list request asks for the `limit` items after a marker (and an offset)
//! in a total order. Sorting every candidate for each page costs
//! O(n log n) per page; instead [`page_after`] drops what is not after the
//! marker, selects the `offset + limit` smallest in O(n), and sorts only
//! those. The order is total (every list breaks ties by `created_at` and
//! `id`), so the page is exactly the one a full sort would give.

use std::cmp::Ordering;

/// The items of `items` that come after `marker` in `order`, skipping
/// `offset` of them, at most `limit`, in order. `marker` is compared with
/// `order`, not looked up: it need not be one of `items`.
pub fn page_after<'a, T>(
    mut items: Vec<&'a T>,
    marker: Option<&T>,
    offset: usize,
    limit: usize,
    order: impl Fn(&T, &T) -> Ordering,
) -> Vec<&'a T> {
    if let Some(m) = marker {
        items.retain(|x| order(x, m) == Ordering::Greater);
    }
    let wanted = offset.saturating_add(limit);
    if wanted < items.len() {
        items.select_nth_unstable_by(wanted, |a, b| order(a, b));
        items.truncate(wanted);
    }
    items.sort_unstable_by(|a, b| order(a, b));
    items.into_iter().skip(offset).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page (marker, offset, limit) equals the same slice of a full sort.
    #[test]
    fn pages_are_the_slices_of_a_full_sort() {
        // A scrambled permutation of 0..200.
        let values: Vec<u32> = (0..200).map(|i| (i * 7919) % 200).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let desc = |a: &u32, b: &u32| b.cmp(a);
        for marker in [None, Some(0), Some(57), Some(199), Some(500)] {
            for offset in [0, 3, 250] {
                for limit in [0, 1, 10, 199, 1000] {
                    let page = page_after(
                        values.iter().collect(),
                        marker.as_ref(),
                        offset,
                        limit,
                        u32::cmp,
                    );
                    let expected: Vec<&u32> = sorted
                        .iter()
                        .filter(|v| marker.is_none_or(|m| **v > m))
                        .skip(offset)
                        .take(limit)
                        .collect();
                    assert_eq!(
                        page, expected,
                        "marker {marker:?} offset {offset} limit {limit}"
                    );
                    let page = page_after(
                        values.iter().collect(),
                        marker.as_ref(),
                        offset,
                        limit,
                        desc,
                    );
                    let expected: Vec<&u32> = sorted
                        .iter()
                        .rev()
                        .filter(|v| marker.is_none_or(|m| **v < m))
                        .skip(offset)
                        .take(limit)
                        .collect();
                    assert_eq!(
                        page, expected,
                        "desc, marker {marker:?} offset {offset} limit {limit}"
                    );
                }
            }
        }
    }
}
