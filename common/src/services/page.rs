//! One page of a sorted listing, for every listing: the distribution API's tags and catalog
//! (whose cursor is the page's last item, the `last=` of the `Link` header) and the management
//! API's (whose cursor is opaque, see `management_model::PageRequest`).

use serde::Serialize;

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// No items, and no page after.
    pub fn empty() -> Self {
        Page {
            items: Vec::new(),
            next_cursor: None,
        }
    }

    /// The first `limit` rows as items, and the cursor of the last of them when a further row
    /// was read (each listing reads `limit + 1`, so that the last page says it is the last).
    pub fn of_rows<R>(
        mut rows: Vec<R>,
        limit: u32,
        cursor: impl Fn(&R) -> String,
        item: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Page {
            items: rows.into_iter().map(item).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_with_a_cursor_only_when_more_follow() {
        let page = Page::of_rows(vec![1, 2, 3], 2, |n| n.to_string(), |n| n * 10);
        assert_eq!(page.items, vec![10, 20]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Page::of_rows(vec![1, 2], 2, |n| n.to_string(), |n| n);
        assert_eq!(last.next_cursor, None);
        assert!(Page::<String>::empty().items.is_empty());
    }
}
